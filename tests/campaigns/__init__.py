"""Reliability campaigns against real processes: crash, race, tamper, failover (see RELIABILITY.md).

Each module runs on its own (`python -m tests.campaigns.crash --runs 50`, ...) and prints a summary;
tests/reliability runs short versions of the same functions in CI.
"""
