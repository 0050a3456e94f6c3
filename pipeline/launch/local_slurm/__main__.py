"""``python -m pipeline.launch.local_slurm start|stop|status [--dir DIR]``: a one-node SLURM here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.launch import local_slurm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.launch.local_slurm", description=__doc__)
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--dir", type=Path, default=local_slurm.STATE_DIR,
                        help="folder for the daemons' state, spool, logs and pid files")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs of the node (default: all)")
    parser.add_argument("--memory-mb", type=int, default=20000, help="RealMemory of the node")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            local_slurm.start(args.dir, cpus=args.cpus, memory_mb=args.memory_mb)
        elif args.action == "stop":
            local_slurm.stop(args.dir)
    except local_slurm.LocalSlurmError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(local_slurm.status(args.dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
