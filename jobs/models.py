"""The registered model's history, and moves of @champion by hand: rollback and promotion.

    resmm models history  [--name NAME] [--config YAML] [key=value ...]
    resmm models rollback [--to VERSION] [--from VERSION] --reason TEXT [--name NAME] ...
    resmm models promote VERSION --reason TEXT [--name NAME] ...

Examples:
    resmm models history
    resmm models rollback --reason "v7 misroutes French calls"          # back to the champion before this one
    resmm models promote 5 --reason "hand-picked after the audit"

A move takes the retrain lock (retrain.lock_path, else <train.storage_path>/retrain-<name>.lock), applies only
if @champion is still the version it saw (or --from VERSION), and records from, to, reason, time and user on both versions
(resmm.rollback.* / resmm.promote.*) and in the model's resmm.champion_history. The next retrain on the data of
a rolled-back champion is skipped. NAME defaults to mlflow.registered_model ("resmm").
"""
from __future__ import annotations

import argparse
import os
import sys

if not __package__:  # python jobs/models.py
    import _bootstrap  # noqa: F401

from jobs._common import run_job

COLUMNS = ("version", "created", "data", "val_balanced_accuracy", "decision", "reason", "faced", "held_champion")


def history_rows(cfg) -> list[dict]:
    """One row per version: created, data fingerprint, validation score, the gate's decision and reason, the
    champion it faced, and when it held @champion."""
    import datetime as dt

    import mlflow

    from resmm.tracking import champion, runs

    name = cfg.mlflow.registered_model
    client = mlflow.MlflowClient(runs.resolve_tracking_uri())
    held = champion.tenures(champion.history(client, name))
    current = champion.champion_version(client, name)
    rows = []
    for version in sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version)):
        tags = version.tags
        score = client.get_run(version.run_id).data.metrics.get("best/balanced_accuracy") if version.run_id else None
        periods = [f"{start[:16]}..{(end or 'now')[:16]}" for start, end in held.get(version.version, [])]
        if current is not None and current.version == version.version and not periods:
            periods = ["now"]
        rows.append({
            "version": version.version,
            "created": dt.datetime.fromtimestamp(version.creation_timestamp / 1000, dt.timezone.utc).isoformat()[:16],
            "data": tags.get("resmm.data_fingerprint", "")[:12],
            "val_balanced_accuracy": f"{score:.4f}" if score is not None else "",
            "decision": tags.get("resmm.decision.action", "manual" if "resmm.promote.to" in tags else ""),
            "reason": tags.get("resmm.rollback.reason") or tags.get("resmm.decision.reason", ""),
            "faced": tags.get("resmm.decision.champion_version", ""),
            "held_champion": ", ".join(periods),
        })
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in COLUMNS} if rows else {}
    print(f"[resmm] {name}: {len(rows)} version(s); @champion = v{current.version if current else 'none'}")
    for line in ([{c: c for c in COLUMNS}] + rows) if rows else []:
        print("  ".join(str(line[c]).ljust(widths[c]) for c in COLUMNS).rstrip())
    return rows


def move(cfg, target: str | None, action: str, reason: str, expected: str | None) -> dict:
    from pipelines.retraining import lease_path
    from resmm.tracking import champion, runs

    done = champion.move_champion(runs.resolve_tracking_uri(), cfg.mlflow.registered_model, str(lease_path(cfg)),
                                  target, action, reason, expected)
    print(f"[resmm] @champion of {cfg.mlflow.registered_model}: v{done.previous or 'none'} -> v{done.version} "
          f"({done.action} by {done.user} at {done.at}: {done.reason})")
    return {"from": done.previous, "to": done.version, "action": done.action, "reason": done.reason,
            "time": done.at, "user": done.user}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # signatures are read from MLmodel files
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    history = commands.add_parser("history", help="one row per version, and who held @champion when")
    rollback = commands.add_parser("rollback", help="move @champion back")
    rollback.add_argument("--to", help="the version to return to (default: the champion before the current one)")
    promote = commands.add_parser("promote", help="make a version @champion by hand")
    promote.add_argument("version")
    for command in (rollback, promote):
        command.add_argument("--reason", required=True)
        command.add_argument("--from", dest="expected", help="move only if this version is still @champion (two "
                             "people rolling back the same champion then roll it back once)")
    for command in (history, rollback, promote):
        command.add_argument("--name", help="registered model (default: mlflow.registered_model)")
        command.add_argument("--config", help="YAML config file")
        command.add_argument("--summary-json", help="write the result as JSON to this path")
        command.add_argument("overrides", nargs="*", help="dotted overrides, e.g. retrain.lock_path=/shared/lock")
    # Overrides may follow the options (argparse takes positionals in one run, and its intermixed parsing does
    # not work with subcommands).
    args, rest = parser.parse_known_args(argv)
    unknown = [item for item in rest if item.startswith("-") or "=" not in item]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    overrides = [*args.overrides, *rest, *([f"mlflow.registered_model={args.name}"] if args.name else [])]
    if args.command == "history":
        body = history_rows
    elif args.command == "rollback":
        def body(cfg):
            return move(cfg, args.to, "rolled_back", args.reason, args.expected)
    else:
        def body(cfg):
            return move(cfg, args.version, "manual_promotion", args.reason, args.expected)
    return run_job(body, args.config, overrides, args.summary_json)


if __name__ == "__main__":
    sys.exit(main())
