"""GRPO training and the Evolver over stored trajectories: their issue comes later."""
