"""Debian packages the suite needs and CI lacks (Go for the tlog judge, Chromium for the portal's browser tests):
installed with apt-get when missing (the suite runs as root in CI), never downloaded from anywhere else."""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

# The suite's workers (pytest-xdist) may want the same package at once; dpkg takes one installer at a time.
LOCK = Path("/tmp/envx-tests-apt.lock")


def apt_install(packages: Sequence[str]) -> None:
    """Install `packages`; a worker that waited on the lock finds them installed (apt-get is then a no-op)."""
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _install(packages)


def _install(packages: Sequence[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=900, check=True)
        subprocess.run(install, env=env, capture_output=True, timeout=900, check=True)
