"""Write the built-in demo dataset (real digits: handwritten, written in 20 languages, spoken by espeak-ng).

    python jobs/build_demo_data.py [--out DIR] [--rows N] [--seed S] [--shards K] [--if-missing]
"""
from __future__ import annotations

import argparse
import sys

from _common import report_user_error  # also puts the repo root on sys.path
from resmm.datasets import demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(demo.default_path()), help="output directory (default: %(default)s)")
    parser.add_argument("--rows", type=int, default=demo.DemoSpec.rows)
    parser.add_argument("--seed", type=int, default=demo.DemoSpec.seed)
    parser.add_argument("--shards", type=int, default=demo.DemoSpec.shards)
    parser.add_argument("--if-missing", action="store_true", help="do nothing when the dataset is already built")
    args = parser.parse_args(argv)
    if args.rows < 100 or args.shards < 1 or args.shards > args.rows:
        print("resmm: --rows must be >= 100 and --shards between 1 and --rows", file=sys.stderr)
        return 2
    spec = demo.DemoSpec(rows=args.rows, seed=args.seed, shards=args.shards)
    if args.if_missing and demo.is_built(args.out, spec):
        print(f"[demo] already built at {args.out}")
        return 0
    try:
        demo.build(args.out, spec)
    except RuntimeError as exc:
        return report_user_error(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
