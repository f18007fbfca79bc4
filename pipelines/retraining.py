"""Scheduled retraining with a champion/challenger gate.

fingerprint the data → skip if the champion saw the same data → (under a lease) train a challenger →
score champion and challenger on the same rows → promote only if the challenger is better and no less robust.
"""
from __future__ import annotations

from pathlib import Path

from pipelines.inference import evaluate_model
from pipelines.ingest import scan_source
from pipelines.runtime import connect_ray
from pipelines.training import resolve_data_path, run_training
from resmm.config import Config
from resmm.sources.fingerprint import data_fingerprint
from resmm.lease import Lease, LeaseHeld
from resmm.console import say
from resmm.tracking import champion as champions
from resmm.tracking import registry, runs
from resmm.train.driver import storage_uri

CHAMPION, FINGERPRINT_TAG = champions.CHAMPION, champions.FINGERPRINT_TAG
CHALLENGER = "challenger"


def mlflow_client(tracking_uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri)


def lease_path(cfg: Config) -> Path:
    if cfg.retrain.lock_path:
        return Path(cfg.retrain.lock_path)
    storage = storage_uri(cfg.train.storage_path)
    if "://" in storage:
        raise ValueError("retrain.lock_path must name a shared filesystem path when train.storage_path is a URL")
    return Path(storage) / f"retrain-{cfg.mlflow.registered_model}.lock"


def decide(cfg: Config, champion_scores: dict | None, challenger_scores: dict) -> tuple[str, str]:
    """(action, reason) of the promotion gate."""
    if champion_scores is None:
        return "promoted", "no champion yet"
    needed = champion_scores["balanced_accuracy"] + cfg.retrain.min_improvement
    if challenger_scores["balanced_accuracy"] < needed:
        return "rejected", (
            f"balanced accuracy {challenger_scores['balanced_accuracy']:.4f} < champion "
            f"{champion_scores['balanced_accuracy']:.4f} + min_improvement {cfg.retrain.min_improvement}"
        )
    drop = champion_scores["robustness"] - challenger_scores["robustness"]
    if drop > cfg.retrain.max_robustness_drop:
        return "rejected", (
            f"robustness fell by {drop:.4f} (> max_robustness_drop {cfg.retrain.max_robustness_drop})"
        )
    return "promoted", (
        f"balanced accuracy {challenger_scores['balanced_accuracy']:.4f} >= {needed:.4f} and robustness "
        f"change {-drop:+.4f} within {cfg.retrain.max_robustness_drop}"
    )


def run_retrain(cfg: Config, progress=say) -> dict:
    runs.check_tracking_access(runs.resolve_tracking_uri())
    data_url = resolve_data_path(cfg, progress)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"path": data_url})})
    source = scan_source(data_url, list(cfg.model.modalities))
    fingerprint = data_fingerprint(source.shards)
    tracking_uri = runs.resolve_tracking_uri()
    name = cfg.mlflow.registered_model
    progress(f"[retrain] data fingerprint {fingerprint['digest'][:16]} ({fingerprint['files']} files, "
             f"{fingerprint['rows']} rows)")
    summary = {"registered_model": name, "data_fingerprint": fingerprint["digest"]}

    champion = registry.version_by_alias(tracking_uri, name, CHAMPION)
    if champion is not None and champion.tags.get(FINGERPRINT_TAG) == fingerprint["digest"]:
        progress(f"[retrain] champion v{champion.version} was trained on this data: nothing to do")
        return {**summary, "decision": {"action": "skipped", "reason": "no new data",
                                        "champion_version": champion.version}}
    rollback = champions.rolled_back_on(mlflow_client(tracking_uri), name, fingerprint["digest"])
    if rollback is not None:
        reason = (f"v{rollback.previous}, trained on this data, was rolled back on {rollback.at} by {rollback.user} "
                  f"({rollback.reason}); retraining waits for new data")
        progress(f"[retrain] {reason}")
        return {**summary, "decision": {"action": "skipped", "reason": reason,
                                        "champion_version": champion.version if champion else None}}
    try:
        lease = Lease(lease_path(cfg), cfg.retrain.lease_seconds).acquire()
    except LeaseHeld as exc:
        progress(f"[retrain] {exc}")
        return {**summary, "decision": {"action": "skipped", "reason": str(exc)}}
    try:
        return {**summary, **_train_and_gate(cfg, source, fingerprint, tracking_uri, progress)}
    finally:
        lease.release()


def _train_and_gate(cfg: Config, source, fingerprint: dict, tracking_uri: str, progress) -> dict:
    name = cfg.mlflow.registered_model
    # Re-read under the lease: another retrain may have promoted a champion since the first look.
    champion = registry.version_by_alias(tracking_uri, name, CHAMPION)
    if champion is not None and champion.tags.get(FINGERPRINT_TAG) == fingerprint["digest"]:
        return {"decision": {"action": "skipped", "reason": "no new data", "champion_version": champion.version}}
    # The Ray Train run name follows the data, so a retried job resumes from its checkpoints.
    run_name = cfg.train.run_name or f"retrain-{name}-{fingerprint['digest'][:16]}"
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"run_name": run_name})})
    warm = None
    if cfg.retrain.warm_start and champion is not None:
        progress(f"[retrain] warm start from champion v{champion.version}")
        warm = registry.registered_weights(tracking_uri, f"models:/{name}/{champion.version}")
    progress(f"[retrain] training a challenger (Ray Train run '{run_name}')")
    trained = run_training(cfg, progress=progress, initial_weights=warm, train_source=source)
    challenger_version = trained["model_version"]
    registry.set_alias(tracking_uri, name, CHALLENGER, challenger_version)

    connect_ray()
    if cfg.retrain.eval_path:
        eval_source, validation = scan_source(cfg.retrain.eval_path, list(cfg.model.modalities)), None
    else:
        eval_source, validation = source, True
    evaluate = dict(validation=validation, val_fraction=cfg.data.val_fraction, group_column=cfg.data.group_column)
    progress("[retrain] scoring challenger and champion on the same evaluation rows")
    challenger_scores = evaluate_model(f"models:/{name}/{challenger_version}", tracking_uri, eval_source, **evaluate)
    champion_scores = None
    if champion is not None:
        champion_scores = evaluate_model(f"models:/{name}/{champion.version}", tracking_uri, eval_source, **evaluate)
    action, reason = decide(cfg, champion_scores, challenger_scores)
    if action == "promoted":  # under the lease, as every move of @champion (resmm/tracking/champion.py)
        champions.record(mlflow_client(tracking_uri), name, champions.Move(
            challenger_version, champion.version if champion else None, "promoted", reason, champions.now(),
            champions.current_user(), fingerprint["digest"], champion.tags.get(FINGERPRINT_TAG) if champion else None))
    scores = {"challenger": challenger_scores, "champion": champion_scores}
    registry.tag_version(tracking_uri, name, challenger_version, {
        "resmm.decision.action": action,
        "resmm.decision.reason": reason,
        "resmm.decision.challenger_balanced_accuracy": f"{challenger_scores['balanced_accuracy']:.6f}",
        "resmm.decision.challenger_robustness": f"{challenger_scores['robustness']:.6f}",
        "resmm.decision.champion_version": champion.version if champion else "none",
        "resmm.decision.champion_balanced_accuracy":
            f"{champion_scores['balanced_accuracy']:.6f}" if champion_scores else "none",
        "resmm.decision.champion_robustness": f"{champion_scores['robustness']:.6f}" if champion_scores else "none",
    })
    progress(f"[retrain] decision: {action} v{challenger_version} ({reason})")
    return {
        "decision": {
            "action": action,
            "reason": reason,
            "champion_version": champion.version if champion else None,
            "challenger_version": challenger_version,
            "scores": scores,
        },
        "training": trained,
    }
