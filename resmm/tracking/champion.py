"""The champion's history, and every move of `@champion`: the retrain gate's promotions, manual promotions and
rollbacks.

An MLflow alias keeps no history (mlflow#2169). So each move appends an event to the registered model's tag
`resmm.champion_history` (JSON, the latest HISTORY_LIMIT moves), and writes an audit record on both versions
involved (`resmm.<rollback|promote>.{from,to,reason,time,user}`). Moves run under the retrain lease, and apply
only if the champion is still the one the caller saw. Of two concurrent rollbacks, one wins and the other gets
a clear error.
"""
from __future__ import annotations

import datetime as dt
import getpass
import json
from dataclasses import asdict, dataclass

import mlflow
from mlflow.exceptions import MlflowException

from resmm.lease import Lease, LeaseHeld

CHAMPION = "champion"
HISTORY_TAG = "resmm.champion_history"
HISTORY_LIMIT = 200  # events kept in the tag (a tag value holds at most 5,000 characters on some stores)
FINGERPRINT_TAG = "resmm.data_fingerprint"


class ChampionMoveError(ValueError):
    """A move of @champion that resmm refuses (a user error: one line, exit code 2)."""


@dataclass
class Move:
    """One move of @champion: `version` became champion in place of `previous` (None: there was none)."""

    version: str
    previous: str | None
    action: str  # promoted (the retrain gate), manual_promotion, rolled_back
    reason: str
    at: str  # UTC, ISO 8601
    user: str
    fingerprint: str | None = None  # the new champion's training data
    previous_fingerprint: str | None = None


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def current_user() -> str:
    try:
        return getpass.getuser()  # $LOGNAME, $USER, ... then the password database
    except (KeyError, OSError):
        return "unknown"


def history(client: mlflow.MlflowClient, name: str) -> list[Move]:
    """Every recorded move of the model's champion, oldest first (empty for a model without one)."""
    try:
        raw = client.get_registered_model(name).tags.get(HISTORY_TAG)
    except MlflowException:
        return []
    return [Move(**event) for event in json.loads(raw)] if raw else []


def champion_version(client: mlflow.MlflowClient, name: str):
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def record(client: mlflow.MlflowClient, name: str, move: Move) -> None:
    """Point @champion at the move's version and append the move to the history."""
    client.set_registered_model_alias(name, CHAMPION, move.version)
    events = [asdict(m) for m in history(client, name)] + [asdict(move)]
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(events[-HISTORY_LIMIT:], separators=(",", ":")))


def held_champion(client: mlflow.MlflowClient, name: str, version: str) -> bool:
    """Whether the version ever held @champion: in the history, or promoted by a retrain gate before it."""
    if any(m.version == version for m in history(client, name)):
        return True
    return client.get_model_version(name, version).tags.get("resmm.decision.action") == "promoted"


def contract(name: str, version: str) -> dict:
    """The version's serving contract: its input columns (modalities) and output columns (classes)."""
    signature = mlflow.models.get_model_info(f"models:/{name}/{version}").signature
    if signature is None:
        return {}
    return {"inputs": signature.inputs.input_names(), "outputs": signature.outputs.input_names()
            if signature.outputs is not None else []}


def move_champion(tracking_uri: str, name: str, lock_path: str, target: str | None, action: str, reason: str,
                  expected: str | None = None, lease_seconds: float = 300) -> Move:
    """Move @champion to `target` (None: back to the champion before the current one) under the retrain lease,
    only if @champion is still `expected` (default: the champion when the call began), as a compare-and-set.

    Refuses, with ChampionMoveError: no reason, a version that does not exist, a rollback to a version that never
    held @champion, a version whose serving contract differs from the current champion's, and a champion that is
    not the expected one."""
    if not reason.strip():
        raise ChampionMoveError("say why: --reason TEXT is recorded on both versions")
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    if expected is None:
        seen = champion_version(client, name)
        expected = seen.version if seen else None
    try:
        lease = Lease(lock_path, lease_seconds).acquire()
    except LeaseHeld as exc:
        raise ChampionMoveError(f"{exc}; try again when it is done") from None
    try:
        current = champion_version(client, name)
        if (current.version if current else None) != expected:
            raise ChampionMoveError(f"@champion is v{current.version if current else 'none'}, not v{expected}: "
                                    "someone moved it meanwhile; look at `resmm models history` and run it again")
        target = resolve_target(client, name, current, target, action)
        check_target(client, name, current, target, action)
        move = Move(target, current.version if current else None, action, reason, now(), current_user(),
                    client.get_model_version(name, target).tags.get(FINGERPRINT_TAG),
                    current.tags.get(FINGERPRINT_TAG) if current else None)
        record(client, name, move)
        audit(client, name, move)
        return move
    finally:
        lease.release()


def resolve_target(client, name: str, current, target: str | None, action: str) -> str:
    if target is not None:
        return str(target)
    if action != "rolled_back":
        raise ChampionMoveError("name the version to promote")
    if current is None:
        raise ChampionMoveError(f"'{name}' has no @champion to roll back")
    moves = [m for m in history(client, name) if m.version == current.version and m.previous]
    if not moves:
        raise ChampionMoveError(f"no champion before v{current.version} is on record; name one with --to VERSION")
    return moves[-1].previous


def check_target(client, name: str, current, target: str, action: str) -> None:
    try:
        client.get_model_version(name, target)
    except MlflowException:
        raise ChampionMoveError(f"'{name}' has no version {target}") from None
    if current is not None and current.version == target:
        raise ChampionMoveError(f"v{target} is already @champion")
    if action == "rolled_back" and not held_champion(client, name, target):
        raise ChampionMoveError(f"v{target} never held @champion; a rollback returns to an earlier champion "
                                "(`resmm models promote` promotes any version)")
    if current is not None:
        theirs, ours = contract(name, target), contract(name, current.version)
        if theirs != ours:
            raise ChampionMoveError(f"v{target} serves another data contract than v{current.version} "
                                    f"(inputs {theirs.get('inputs')}, outputs {theirs.get('outputs')}); "
                                    "requests to @champion would break")


def audit(client, name: str, move: Move) -> None:
    """The `resmm.<rollback|promote>.*` record, on the new champion and on the one it replaced."""
    kind = "rollback" if move.action == "rolled_back" else "promote"
    tags = {f"resmm.{kind}.from": move.previous or "none", f"resmm.{kind}.to": move.version,
            f"resmm.{kind}.reason": move.reason, f"resmm.{kind}.time": move.at, f"resmm.{kind}.user": move.user}
    for version in filter(None, (move.version, move.previous)):
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)


def rolled_back_on(client: mlflow.MlflowClient, name: str, fingerprint: str) -> Move | None:
    """The latest rollback away from a champion trained on these data, if any: the retrain gate does not
    promote a new model on data whose champion a person rolled back."""
    moves = [m for m in history(client, name) if m.action == "rolled_back" and m.previous_fingerprint == fingerprint]
    return moves[-1] if moves else None


def tenures(moves: list[Move]) -> dict[str, list[tuple[str, str | None]]]:
    """{version: [(from, until or None while it holds @champion)]} from the history."""
    held: dict[str, list[tuple[str, str | None]]] = {}
    for move, following in zip(moves, [*moves[1:], None]):
        held.setdefault(move.version, []).append((move.at, following.at if following else None))
    return held
