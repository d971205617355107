"""Debian packages the suite needs and CI lacks (Go for the tlog judge, Chromium for the portal's browser tests):
installed with apt-get when missing (the suite runs as root in CI), never downloaded from anywhere else."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence


def apt_install(packages: Sequence[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=900, check=True)
        subprocess.run(install, env=env, capture_output=True, timeout=900, check=True)
