"""Train a grid of settings on the same data with fixed seeds and tabulate them, beside a hand-written reference.

    resmm compare [--grid YAML] [--config YAML] [--out STEM] [--no-reference | --reference-only]
                           [--reference-epochs N] [key=value ...]

The grid is a YAML list of {name, overrides}; key=value overrides apply to every setting. After the grid, the
reference recipe (resmm/baselines/reference.py: one small model per modality, late fusion) is trained once on
the base config's data and split. Writes STEM.json and STEM.md (default: benchmarks/results/compare).
"""
from __future__ import annotations

import argparse
import sys

if not __package__:  # python jobs/compare.py
    import _bootstrap  # noqa: F401

from jobs._common import REPO_ROOT, USER_ERRORS, report_user_error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default=str(REPO_ROOT / "jobs" / "configs" / "grids" / "fusions.yaml"))
    parser.add_argument("--config", help="base YAML config for every setting")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "compare"))
    parser.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                        help="train the hand-written reference recipe after the grid (default: on)")
    parser.add_argument("--reference-only", action="store_true", help="skip the grid, train only the reference")
    parser.add_argument("--reference-epochs", type=int, default=None,
                        help="epochs of each reference model (default: the recipe's 12; fewer for smoke runs)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    if args.reference_only and not args.reference:
        parser.error("--reference-only and --no-reference exclude each other")
    if args.reference_epochs is not None and args.reference_epochs < 1:
        parser.error("--reference-epochs must be at least 1")

    from pipelines.compare import load_grid, markdown_table, run_grid, run_reference, write_results
    from resmm.baselines.reference import EPOCHS

    try:
        rows = [] if args.reference_only else run_grid(load_grid(args.grid), args.config, args.overrides)
        if rows and args.reference:
            write_results(rows, args.out)  # the grid's results are kept should the reference fail
        if args.reference:
            rows += run_reference(args.config, args.overrides, epochs=args.reference_epochs or EPOCHS)
    except USER_ERRORS as exc:
        return report_user_error(exc)
    json_path, md_path = write_results(rows, args.out)
    print(markdown_table(rows))
    print(f"[compare] wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
