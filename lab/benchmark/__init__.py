"""The benchmark: AIOpsLab's tasks (and ours, and generated ones) run against the agents.

The runner injects a scenario into the lab, asks the agents the task's question
as AIOpsLab phrases it, scores the submission with ``agents.scoring`` and
recovers the lab, so ``aoi bench``, the tests and ``bench/`` share one loop.
"""
