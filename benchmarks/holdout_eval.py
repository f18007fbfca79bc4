"""Score registered models on a labelled split they never saw (the stamps corpus's stamp-disjoint holdout).

    python benchmarks/holdout_eval.py --data ~/.cache/resmm/stamps-v2/holdout --summary run1.json [run2.json ...]
                                      [--compare benchmarks/results/compare.json] [--out benchmarks/results/holdout.json]

For each training summary (`jobs/train.py --summary-json`) and each row of a `jobs/compare.py` result that has a
registered model, runs `jobs/predict.py` with that registered version on `--data`, joins the predictions to the labels by `sample_id`, and reports balanced accuracy,
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


def groups_by_id(data: str) -> dict[str, int]:
    """Each row's group for the bootstrap: its split bucket (its group_id where it has one, else its sample_id)."""
    from resmm.data.split import buckets_of, split_keys

    table = pq.read_table(data)
    ids = [str(i) for i in table.column("sample_id").to_pylist()]
    return dict(zip(ids, buckets_of(split_keys(table, "group_id")).tolist()))


def balanced_accuracy_se(y_true: list[str], y_pred: list[str], groups: list[int]) -> float:
    """Bootstrap standard error of the balanced accuracy, resampling the holdout's groups."""
    import numpy as np

    from resmm.train.noise import standard_error

    classes = {c: i for i, c in enumerate(sorted(set(y_true)))}
    labels = np.array([classes[y] for y in y_true])
    hits = np.array([t == p for t, p in zip(y_true, y_pred)], dtype=np.float64)
    return standard_error(labels, hits, np.array(groups), seed=0)


def score(uri: str, data: str, truth: dict[str, str], groups: dict[str, int]) -> dict:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, str(REPO_ROOT / "jobs" / "predict.py"), "--model-uri", uri,
                        "--input", data, "--output", out], check=True, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
        predicted = pq.read_table(out, columns=["sample_id", "predicted_label"]).to_pylist()
    y_true = [truth[str(p["sample_id"])] for p in predicted]
    y_pred = [str(p["predicted_label"]) for p in predicted]
    return {"model_uri": uri, "rows": len(y_true),
            "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
            "balanced_accuracy_se": balanced_accuracy_se(y_true, y_pred, [groups[str(p["sample_id"])]
                                                                            for p in predicted]),
            "accuracy": accuracy_score(y_true, y_pred),
            "macro_f1": f1_score(y_true, y_pred, average="macro")}


def registered_runs(summaries: list[Path], compares: list[Path]) -> dict[str, tuple[str, float | None, list]]:
    """{run name: (registered model URI, its fused head's validation balanced accuracy, predictor candidates)}."""
    runs = {}
    for path in summaries:
        summary = json.loads(path.read_text())
        runs[path.stem] = (f"models:/{summary['registered_model']}/{summary['model_version']}",
                           summary["metrics"]["val_balanced_accuracy"],
                           (summary.get("predictor") or {}).get("candidates", []))
    for path in compares:
        for row in json.loads(path.read_text()):
            if row.get("model_uri"):
                runs[f"{path.stem}: {row['name']}"] = (row["model_uri"], row["val_balanced_accuracy"],
                                                       row.get("predictor_candidates", []))
    return runs


def load_served(uri: str):
    """The registered pyfunc's python model (network, preprocessing, chosen predictor)."""
    import mlflow

    from resmm.tracking.runs import resolve_tracking_uri

    mlflow.set_tracking_uri(resolve_tracking_uri())
    return mlflow.pyfunc.load_model(uri).unwrap_python_model()


def model_outputs(served, frame, labels: list[str | None]):
    """ValidationOutputs of the registered network over contract rows with their class names."""
    import torch

    from resmm.train.predictor_choice import ValidationOutputs

    index = {name: i for i, name in enumerate(served.spec.classes)}

    def batches():
        for start in range(0, len(frame), 256):
            batch, _ = served.model_inputs(frame.iloc[start:start + 256])
            yield {**batch, "label": torch.tensor([index.get(str(y), -1) for y in labels[start:start + 256]])}

    return ValidationOutputs.collect(served.network, batches())


def candidate_scores(uri: str, data: str, truth: dict[str, str], candidates: list[dict]) -> dict[str, float]:
    """Holdout balanced accuracy of every final-predictor candidate the run scored on validation, with the weights
    it fitted there (the registered model serves only the chosen one)."""
    from resmm.train.predictor_choice import candidate_predictor

    frame = pq.read_table(data).to_pandas()
    outputs = model_outputs(load_served(uri), frame, [truth[str(s)] for s in frame["sample_id"]])
    return {row["candidate"]: balanced_accuracy_score(outputs.labels, outputs.predict(candidate_predictor(row)))
            for row in candidates}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--summary", nargs="*", type=Path, default=[])
    parser.add_argument("--compare", nargs="*", type=Path, default=[], help="jobs/compare.py result JSON files")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "holdout.json")
    args = parser.parse_args()
    truth, groups = labels_by_id(args.data), groups_by_id(args.data)
    results = {}
    print("| run | holdout balanced acc (served) ± SE over groups | holdout acc | macro-F1 | val balanced acc (fused) | rows | "
          "holdout balanced acc per candidate |\n|---|---|---|---|---|---|---|")
    for name, (uri, val_balanced, candidates) in registered_runs(args.summary, args.compare).items():
        result = {**score(uri, args.data, truth, groups), "val_balanced_accuracy": val_balanced,
                  "candidates": candidate_scores(uri, args.data, truth, candidates) if candidates else {}}
        results[name] = result
        per_candidate = ", ".join(f"{c} {v:.3f}" for c, v in result["candidates"].items())
        print(f"| {name} | {result['balanced_accuracy']:.3f} ± {result['balanced_accuracy_se']:.3f} | "
              f"{result['accuracy']:.3f} | "
              f"{result['macro_f1']:.3f} | {result['val_balanced_accuracy']:.3f} | {result['rows']} | "
              f"{per_candidate} |", flush=True)
    args.out.write_text(json.dumps({"data": args.data, "runs": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
