"""Does the final-predictor rule pick well? Re-run the choice on registered models and score it on a holdout.

    python benchmarks/predictor_choice_eval.py --holdout ~/.cache/resmm/stamps-v2/holdout \\
        --compare benchmarks/results/regularisation-stamps.json [...] [--out benchmarks/results/predictor-choice]

For each registered model of a `jobs/compare.py` result: decode the validation side of its training data (its
own split: `data.group_column`, `data.val_fraction`), choose the predictor with today's rule
(resmm/train/predictor_choice.py) and with the plain best-on-validation rule, and score both, the fused head and
the best single head on the holdout. Prints a table; writes JSON and markdown.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from sklearn.metrics import balanced_accuracy_score

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from holdout_eval import load_served, model_outputs  # noqa: E402  (benchmarks/ is on sys.path as the script's own folder)
from resmm.data.split import is_validation, split_keys  # noqa: E402
from resmm.train.predictor_choice import candidate_predictor, choose_predictor  # noqa: E402


def validation_frame(config: dict):
    table = pq.read_table(config["data.path"])
    keep = is_validation(split_keys(table, config["data.group_column"]), config["data.val_fraction"])
    return table.filter(keep).to_pandas()


def evaluate(row: dict, holdout) -> dict:
    served = load_served(row["model_uri"])
    val = validation_frame(row["config"])
    val_outputs = model_outputs(served, val, list(val["label"]))
    classes = len(served.spec.classes)
    rule = choose_predictor(val_outputs, classes, seed=row["config"]["train.seed"])
    scores = {r["candidate"]: r["val_balanced_accuracy"] for r in rule.table}
    best_on_val = max(scores, key=scores.get)  # the first maximum, as the plain rule takes it
    test = model_outputs(served, holdout, list(holdout["label"]))
    holdout_scores = {row["candidate"]: float(balanced_accuracy_score(test.labels,
                                                                      test.predict(candidate_predictor(row))))
                      for row in rule.table}
    heads = {n: v for n, v in holdout_scores.items() if n.startswith("head:")}
    return {"name": row["name"], "rule": rule.chosen.name, "best_on_val": best_on_val,
            "holdout": holdout_scores, "holdout_rule": holdout_scores[rule.chosen.name],
            "holdout_best_on_val": holdout_scores[best_on_val], "holdout_fused": holdout_scores["fused"],
            "holdout_best_head": max(heads.values()), "val": scores}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--holdout", required=True)
    parser.add_argument("--compare", nargs="+", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "predictor-choice")
    args = parser.parse_args()
    holdout = pq.read_table(args.holdout).to_pandas()
    lines = ["| run | rule's choice | holdout | best on validation | holdout | fused head | best single head |",
             "|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    results = []
    for path in args.compare:
        for row in json.loads(path.read_text()):
            if not row.get("model_uri"):
                continue
            r = evaluate(row, holdout)
            results.append(r)
            lines.append(f"| {path.stem}: {r['name']} | {r['rule']} | {r['holdout_rule']:.3f} | {r['best_on_val']} | "
                         f"{r['holdout_best_on_val']:.3f} | {r['holdout_fused']:.3f} | {r['holdout_best_head']:.3f} |")
            print(lines[-1], flush=True)
    gap = lambda key: [r[key] - max(r["holdout_fused"], r["holdout_best_head"]) for r in results]  # noqa: E731
    summary = {key: {"mean": float(np.mean(gap(key))), "worst": float(np.min(gap(key)))}
               for key in ("holdout_rule", "holdout_best_on_val")}
    lines += ["", "Holdout balanced accuracy minus max(fused head, best single head), over the runs: "
              f"the rule mean {summary['holdout_rule']['mean']:+.3f}, worst {summary['holdout_rule']['worst']:+.3f}; "
              f"best on validation mean {summary['holdout_best_on_val']['mean']:+.3f}, "
              f"worst {summary['holdout_best_on_val']['worst']:+.3f}."]
    print(lines[-1])
    args.out.with_suffix(".json").write_text(json.dumps({"runs": results, "summary": summary}, indent=1) + "\n")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
