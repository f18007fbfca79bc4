"""Epoch progress from the training workers to the driver's console: rank 0 posts to a small Ray actor, and
the driver draws it as one tqdm bar per epoch plus one result line per epoch.

Workers print nothing to the console themselves: their output stays in Ray's log directory, and a
`ray job submit` log shows only what the driver draws.
"""
from __future__ import annotations

import contextlib
import threading
import time

import ray

from resmm.console import progress_bar, say

POLL_SECONDS = 0.5


class ProgressBoard:
    """Ray actor: the state of the epoch in flight and the result lines of finished epochs."""

    def __init__(self):
        self._state: dict = {}
        self._lines: list[str] = []

    def update(self, state: dict) -> None:
        self._state = state

    def add_line(self, line: str) -> None:
        self._lines.append(line)

    def read(self, lines_seen: int) -> tuple[dict, list[str]]:
        return self._state, self._lines[lines_seen:]


def start_board():
    """A board actor for one fit; it takes no CPU, so it never competes with Ray Data or the workers."""
    return ray.remote(ProgressBoard).options(num_cpus=0).remote()


class EpochReporter:
    """Rank 0's side: posts rows done and the running loss at most every POLL_SECONDS (fire and forget)."""

    def __init__(self, board, epoch: int, label: str, expected_rows: int):
        """label: the epoch as the console shows it, e.g. "3/4", or "3/≤30" when training until converged."""
        self.board, self.epoch, self.label, self.expected_rows = board, epoch, label, expected_rows
        self._posted_at = 0.0

    def update(self, rows: int, loss: float, force: bool = False) -> None:
        now = time.monotonic()
        if self.board is None or not (force or now - self._posted_at >= POLL_SECONDS):
            return
        self._posted_at = now
        self.board.update.remote({"epoch": self.epoch, "label": self.label, "rows": rows,
                                  "expected_rows": self.expected_rows, "loss": loss})

    def finish(self, line: str) -> None:
        if self.board is not None:
            self.board.add_line.remote(line)


class _Drawer:
    """The driver's side: one bar per epoch, redrawn from the board's latest state."""

    def __init__(self, board):
        self.board, self.bar, self.bar_epoch, self.lines_seen = board, None, None, 0

    def poll(self) -> None:
        state, lines = ray.get(self.board.read.remote(self.lines_seen))
        if state and state["epoch"] != self.bar_epoch:
            self.close_bar()
            self.bar_epoch = state["epoch"]
            self.bar = progress_bar(state["expected_rows"], f"epoch {state['label']}")
        if self.bar is not None and state:
            self.bar.total = max(self.bar.total or 0, state["rows"])  # resampled epochs may feed a few more
            self.bar.update(state["rows"] - self.bar.n)
            self.bar.set_postfix(loss=f"{state['loss']:.4f}", refresh=False)
        if lines:
            if self.bar is not None:  # the epoch is over: what it fed is its whole (drop_last trims the tail)
                self.bar.total = self.bar.n
                self.bar.refresh()
            self.close_bar()
            for line in lines:
                say(line)
            self.lines_seen += len(lines)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@contextlib.contextmanager
def drawn(board):
    """Draw the board on the console while the body (Ray Train's blocking `fit`) runs."""
    drawer, stop = _Drawer(board), threading.Event()

    def loop():
        while not stop.wait(POLL_SECONDS):
            with contextlib.suppress(ray.exceptions.RayError):
                drawer.poll()

    thread = threading.Thread(target=loop, name="resmm-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        with contextlib.suppress(ray.exceptions.RayError):
            drawer.poll()  # the last epoch's line
        drawer.close_bar()
        ray.kill(board)
