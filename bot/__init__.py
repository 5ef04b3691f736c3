"""The Slack front end (slack-bolt, async): its issue comes after the agent runtime."""
