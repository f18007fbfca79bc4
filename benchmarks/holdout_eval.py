"""Score registered models on a labelled split they never saw (the stamps corpus's stamp-disjoint holdout).

    python benchmarks/holdout_eval.py --data ~/.cache/resmm/stamps-v1/holdout --summary run1.json [run2.json ...]
                                      [--out benchmarks/results/holdout.json]

For each training summary (`jobs/train.py --summary-json`), runs `jobs/predict.py` with that run's registered
version on `--data`, joins the predictions to the labels by `sample_id`, and reports balanced accuracy,
accuracy and macro-F1 (sklearn). Prints a table; writes JSON.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

REPO_ROOT = Path(__file__).resolve().parents[1]


def labels_by_id(data: str) -> dict[str, str]:
    table = pq.read_table(data, columns=["sample_id", "label"])
    return {str(i): str(label) for i, label in zip(table.column("sample_id").to_pylist(),
                                                   table.column("label").to_pylist())}


def score(summary: dict, data: str, truth: dict[str, str]) -> dict:
    uri = f"models:/{summary['registered_model']}/{summary['model_version']}"
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, str(REPO_ROOT / "jobs" / "predict.py"), "--model-uri", uri,
                        "--input", data, "--output", out], check=True, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
        predicted = pq.read_table(out, columns=["sample_id", "predicted_label"]).to_pylist()
    y_true = [truth[str(p["sample_id"])] for p in predicted]
    y_pred = [str(p["predicted_label"]) for p in predicted]
    return {"model_uri": uri, "rows": len(y_true),
            "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
            "accuracy": accuracy_score(y_true, y_pred),
            "macro_f1": f1_score(y_true, y_pred, average="macro"),
            "val_balanced_accuracy": summary["metrics"]["val_balanced_accuracy"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--summary", nargs="+", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "holdout.json")
    args = parser.parse_args()
    truth = labels_by_id(args.data)
    results = {}
    print("| run | holdout balanced acc | holdout acc | macro-F1 | val balanced acc | rows |\n|---|---|---|---|---|---|")
    for path in args.summary:
        result = score(json.loads(path.read_text()), args.data, truth)
        results[path.stem] = result
        print(f"| {path.stem} | {result['balanced_accuracy']:.3f} | {result['accuracy']:.3f} | "
              f"{result['macro_f1']:.3f} | {result['val_balanced_accuracy']:.3f} | {result['rows']} |", flush=True)
    args.out.write_text(json.dumps({"data": args.data, "runs": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
