"""The `aoi` command and the one settings object; wires store, agents, bot, trainer and lab."""
