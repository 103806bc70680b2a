"""What nf2vec's trainers share: a loop that reports a running mean loss and checkpoints now and then,
resuming a checkpoint of the same run, and the versioned ``.safetensors`` files they write.

A checkpoint holds the run key (what it must match to be resumed: inputs and settings, not the step
count), ``step``, ``seconds`` so far and the last reported ``loss``, plus each trainer's own state.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from backend.errors import NeuralShapesError
from backend.shapes.checkpoints import load_tensors, save_tensors

T = TypeVar("T")
E = TypeVar("E")  # a progress event


def write_versioned(path: Path, format: str, version: int, fields: dict) -> Path:
    """Write ``fields`` to ``path`` atomically (its folder created) under a ``format`` and ``version`` header,
    as :func:`read_versioned` reads them back; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors(path, {"format": format, "version": version, **fields})
    return path


def read_versioned(path: Path, what: str, format: str, version: int, article: str = "a") -> dict:
    """The tensors and fields of ``path``, a file of ``format`` and ``version``; a missing, corrupt or foreign
    file is a one-line :class:`NeuralShapesError` naming it (``what`` the file is, e.g. "latent family")."""
    data = load_tensors(path, f"not a valid {what} file")
    if data.get("format") != format or data.get("version") != version:
        raise NeuralShapesError(
            f"{path}: not {article} {what} file (format {data.get('format')!r} version "
            f"{data.get('version')!r}, expected {format!r} version {version})"
        )
    return data


def checkpoint_key(settings: object, **inputs: object) -> str:
    """What a checkpoint must match to be resumed: the ``settings`` dataclass but for the step count and how
    often the run reports and checkpoints (which may change between runs), and the (JSON) ``inputs``."""
    kept = {
        key: value
        for key, value in asdict(settings).items()
        if key not in ("steps", "checkpoint_every", "report_every")
    }
    return json.dumps({"settings": kept, **inputs}, sort_keys=True)


def resume_checkpoint(path: Path, run_key: str, what: str, differs: str, restore: Callable[[dict], T]) -> T | None:
    """``restore`` the training state from the checkpoint at ``path`` if there is one (None if not); it must
    be of the run ``run_key``.

    A checkpoint of another run (``differs``: what may differ, e.g. "shapes or settings"), or one that is
    corrupt or does not fit (``restore`` raises), is a one-line :class:`NeuralShapesError`.
    """
    if not path.exists():
        return None
    failure = f"not a valid {what} checkpoint"
    state = load_tensors(path, failure)
    if state.get("run") != run_key:
        raise NeuralShapesError(
            f"{path}: checkpoint of another run ({differs} differ); delete it or pass the same ones"
        )
    try:
        return restore(state)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        raise NeuralShapesError(f"{path}: {failure} ({type(error).__name__}: {error})".splitlines()[0]) from None


@dataclass
class LossReports:
    """Steps, time and the mean loss of a resumable training loop, passed to ``progress(step, mean loss)``
    every ``report_every`` steps and at the last one."""

    steps: int
    report_every: int
    checkpoint_every: int
    progress: Callable[[int, float], None]
    step: int = 0
    loss: float = math.nan  # the mean loss last reported
    started: float = field(default_factory=time.perf_counter)
    running: float = 0.0
    count: int = 0

    @classmethod
    def of(cls, settings: Any, report: Callable[[E], None], event: Callable[[str, int, int, float], E]) -> LossReports:
        """The bookkeeping of a run of ``settings`` (its steps, report_every and checkpoint_every) that reports
        ``event("training", step, steps, mean loss)``."""
        return cls(
            settings.steps,
            settings.report_every,
            settings.checkpoint_every,
            lambda step, loss: report(event("training", step, settings.steps, loss)),
        )

    def resume(self, state: dict) -> None:
        """Go on from a checkpoint's step, seconds and loss."""
        self.step, self.loss = int(state["step"]), float(state["loss"])
        self.started = time.perf_counter() - float(state["seconds"])

    def step_done(self, loss: float) -> bool:
        """Count a step of ``loss`` (reporting the mean loss when due); whether to checkpoint now."""
        self.step += 1
        self.running, self.count = self.running + loss, self.count + 1
        if self.step % self.report_every == 0 or self.step == self.steps:
            self.loss, self.running, self.count = self.running / self.count, 0.0, 0
            self.progress(self.step, self.loss)
        return self.step % self.checkpoint_every == 0 and self.step < self.steps

    def checkpoint(self, run_key: str) -> dict:
        """A checkpoint's run key, step, seconds so far and last reported loss."""
        return {"run": run_key, "step": self.step, "seconds": time.perf_counter() - self.started, "loss": self.loss}

    def record(self) -> dict:
        """The steps, seconds and final loss of the finished run, for its ``training`` record."""
        return {
            "steps": self.step,
            "seconds": round(time.perf_counter() - self.started, 1),
            "final_loss": None if math.isnan(self.loss) else self.loss,  # JSON has no NaN
        }
