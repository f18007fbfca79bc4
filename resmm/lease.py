"""An exclusive lease with an expiry on a filesystem path, so that one scheduled retrain runs at a time.

Acquisition is an atomic create (O_CREAT | O_EXCL). A holder that crashed leaves a lease that expires:
a later caller that finds an expired lease takes it over by an atomic rename, so two callers can never both
win. The lease file records who holds it and until when, for the message the loser prints.
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path


class LeaseHeld(RuntimeError):
    """Another process holds an unexpired lease."""


class Lease:
    def __init__(self, path: str | Path, ttl_seconds: float):
        self.path = Path(path)
        self.ttl_seconds = ttl_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def _record(self) -> bytes:
        return json.dumps({"owner": self.owner, "expires_at": time.time() + self.ttl_seconds}).encode()

    def acquire(self) -> "Lease":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.holder()
                if holder and holder.get("expires_at", 0) > time.time():
                    raise LeaseHeld(
                        f"another retrain or champion move holds the lock ({holder.get('owner')}, "
                        f"expires in {holder['expires_at'] - time.time():.0f}s): {self.path}"
                    ) from None
                self._break_expired()
                continue
            with os.fdopen(fd, "wb") as handle:
                handle.write(self._record())
            return self
        raise LeaseHeld(f"another retrain or champion move took the expired lock first: {self.path}")

    def _break_expired(self) -> None:
        # Rename is atomic: of two callers breaking the same expired lease, only one rename succeeds.
        grave = self.path.with_name(f"{self.path.name}.expired-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.path, grave)
            grave.unlink(missing_ok=True)
        except FileNotFoundError:
            pass

    def holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def release(self) -> None:
        holder = self.holder()
        if holder and holder.get("owner") == self.owner:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "Lease":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
