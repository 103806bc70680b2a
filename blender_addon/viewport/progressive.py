"""Which frame a viewport asks for next (plain Python, no bpy): a coarse frame as soon as the view or the
scene changes, the full-resolution frame once they have been still for ``still_seconds``.

One frame is traced at a time per viewport. Each draw calls :meth:`Progressive.step` with what identifies
the view and scene now (the key); a frame traced for another key than the current one is stale: it is
drawn only until a frame of the current key arrives (so that a viewport being orbited shows the latest
picture, one frame behind, instead of nothing) and never stands for the current key: a coarse frame for
the current key is asked at once. A failed frame is not asked again for the same key before
``retry_seconds``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..errors import one_line

COARSE, FULL = "coarse", "full"
STILL_SECONDS = 0.3
RETRY_SECONDS = 2.0


@dataclass
class _Job:
    key: Hashable
    level: str
    future: Future


@dataclass
class Progressive:
    """The progressive state of one viewport (see the module docstring)."""

    still_seconds: float = STILL_SECONDS
    retry_seconds: float = RETRY_SECONDS
    key: Hashable = None
    changed_at: float = 0.0
    done: set[str] = field(default_factory=set)  # levels finished for ``key``
    shown: Any = None  # the latest finished frame, whatever its key: what to draw
    shown_key: Hashable = None
    error: str = ""  # why the last frame failed ("" once one succeeds or the key changes)
    failed_at: float | None = None
    job: _Job | None = None

    def step(self, key: Hashable, now: float, submit: Callable[[str], Future]) -> float | None:
        """Note the current ``key`` at time ``now``, take a finished frame, and start the next one with
        ``submit(level)`` (COARSE or FULL; returns the frame's future). Returns the time at which to draw
        again to go on (None: only when a frame arrives or the view changes)."""
        if key != self.key:
            self.key, self.changed_at, self.done, self.error, self.failed_at = key, now, set(), "", None
        if self.job is not None and self.job.future.done():
            job, self.job = self.job, None
            try:
                frame = job.future.result()
            except Exception as error:  # noqa: BLE001 (any failure is one line in the viewport, never a crash in draw)
                if job.key == self.key:
                    self.error, self.failed_at = one_line(error), now
            else:
                self.shown, self.shown_key = frame, job.key
                if job.key == self.key:
                    self.done.add(job.level)
                    self.error, self.failed_at = "", None
        if self.job is not None:
            return None
        if self.failed_at is not None:
            if now - self.failed_at < self.retry_seconds:
                return self.failed_at + self.retry_seconds
            self.failed_at = None
        if FULL in self.done:
            return None
        if COARSE in self.done and now - self.changed_at < self.still_seconds:
            return self.changed_at + self.still_seconds
        level = FULL if COARSE in self.done else COARSE
        self.job = _Job(key, level, submit(level))
        return None

    @property
    def current(self) -> bool:
        """Whether the frame drawn belongs to the current key."""
        return self.shown is not None and self.shown_key == self.key

    @property
    def busy(self) -> bool:
        return self.job is not None
