"""Command groups of the `aoi` CLI, one module per group, registered in `aoi.cli`."""
