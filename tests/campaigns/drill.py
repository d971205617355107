"""Disaster-recovery campaign: the drill of tests/ops/test_backup.py, run as often as asked.

Each run, in a fresh directory: a registry under load, `envx backup` while it serves, more load with WAL
archiving, the data directory destroyed, `envx restore` from the backup and the archive, and then:
nothing acknowledged is lost, `envx verify` passes, the last published checkpoint is contained; a
point-in-time restore to a moment between; and an older backup restored without the WAL is refused with a
clear message. The checks are the test's own (one place for them).

    python -m tests.campaigns.drill --runs 3
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from tests.ops.test_backup import test_disaster_recovery_drill as drill


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args(argv)
    failed = 0
    for n in range(1, args.runs + 1):
        path = Path(tempfile.mkdtemp(prefix="envx-drill-"))
        path.chmod(0o755)  # the embedded server's system user reads below it
        started = time.perf_counter()
        try:
            drill(path)
            print(f"run {n}: PASS ({time.perf_counter() - started:.0f} s)", flush=True)
        except Exception:  # a failed check or a command that broke: report it, go on with the next run
            failed += 1
            print(f"run {n}: FAIL ({time.perf_counter() - started:.0f} s)\n{traceback.format_exc()}", flush=True)
        finally:
            shutil.rmtree(path, ignore_errors=True)
    print(f"{'PASS' if not failed else 'FAIL'}: {args.runs - failed} of {args.runs} drills passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
