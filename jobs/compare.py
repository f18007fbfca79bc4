"""Train a grid of settings on the same data with fixed seeds and tabulate them.

    python jobs/compare.py [--grid YAML] [--config YAML] [--out STEM] [key=value ...]

The grid is a YAML list of {name, overrides}; key=value overrides apply to every setting.
Writes STEM.json and STEM.md (default: benchmarks/results/compare).
"""
from __future__ import annotations

import argparse
import sys

from _common import REPO_ROOT, USER_ERRORS, report_user_error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default=str(REPO_ROOT / "jobs" / "configs" / "grids" / "fusions.yaml"))
    parser.add_argument("--config", help="base YAML config for every setting")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "compare"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)

    from pipelines.compare import load_grid, markdown_table, run_grid, write_results

    try:
        rows = run_grid(load_grid(args.grid), args.config, args.overrides)
    except USER_ERRORS as exc:
        return report_user_error(exc)
    json_path, md_path = write_results(rows, args.out)
    print(markdown_table(rows))
    print(f"[compare] wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
