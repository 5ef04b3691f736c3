"""Helpers for the test suites and benchmarks: real databases, real processes, no mocks."""
