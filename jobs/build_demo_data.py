"""Write a development corpus: the built-in demo (real digits: handwritten, written in 20 languages, spoken by
espeak-ng) or, with --corpus stamps, Tux Paint's clip-art stamps (16 classes; needs the Debian package
tuxpaint-stamps-default; writes <out>/train for training and <out>/holdout for the final evaluation).

    resmm demo-data [--corpus {demo,stamps}] [--out DIR] [--rows N] [--seed S] [--shards K]
                                   [--if-missing]
"""
from __future__ import annotations

import argparse
import sys

if not __package__:  # python jobs/build_demo_data.py
    import _bootstrap  # noqa: F401

from jobs._common import EXIT_USER_ERROR, report_user_error
from resmm.datasets import demo, stamps

CORPORA = {"demo": (demo, demo.DemoSpec), "stamps": (stamps, stamps.StampsSpec)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="demo", help="which corpus (default: %(default)s)")
    parser.add_argument("--out", help=f"output directory (default: {demo.default_path()} for the demo, "
                                      f"{stamps.default_path()} for the stamps)")
    parser.add_argument("--rows", type=int, help=f"rows (default: {demo.DemoSpec.rows} / {stamps.StampsSpec.rows} "
                                                 "training rows)")
    parser.add_argument("--seed", type=int, help="random seed (default: 0)")
    parser.add_argument("--shards", type=int, help=f"Parquet shards (default: {demo.DemoSpec.shards} / "
                                                   f"{stamps.StampsSpec.shards})")
    parser.add_argument("--if-missing", action="store_true", help="do nothing when the dataset is already built")
    args = parser.parse_args(argv)
    module, spec_type = CORPORA[args.corpus]
    defaults = spec_type()
    rows = defaults.rows if args.rows is None else args.rows
    shards = defaults.shards if args.shards is None else args.shards
    seed = defaults.seed if args.seed is None else args.seed
    out = args.out or str(module.default_path())
    if rows < 100 or shards < 1 or shards > rows:
        print("resmm: --rows must be >= 100 and --shards between 1 and --rows", file=sys.stderr)
        return EXIT_USER_ERROR
    spec = spec_type(rows=rows, seed=seed, shards=shards)
    if args.if_missing and module.is_built(out, spec):
        print(f"[{args.corpus}] already built at {out}")
        return 0
    if args.corpus == "stamps" and not stamps.is_installed():
        print(f"resmm: {stamps.MISSING_PACKAGE}", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        module.build(out, spec)
    except RuntimeError as exc:
        return report_user_error(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
