"""What the networks on nf2vec embeddings share (latent GAN, classifier, transfer network): checks of
their numpy inputs, a per-dimension standardiser, plain MLPs, progress reports and the minibatch loop
that trains the two supervised ones.

Every network reads standardised embeddings (mean 0, standard deviation 1 per dimension over its
training set, stored with the network): the encoder's outputs are maxima of ReLU features whose scale
differs between dimensions and between trained models, and standardised inputs let one learning rate
suit them all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
import torch

from backend.errors import NeuralShapesError, check_cancel

REPORTS = 20  # progress reports per training run: enough for a bar, few enough for a log
MIN_SCALE = 1e-6  # a dimension that varies less than this is constant (e.g. a ReLU dead for every shape)


@dataclass
class TaskProgress:
    """What a progress callback receives while an embedding-space network trains."""

    step: int
    total: int
    figures: dict[str, float] = field(default_factory=dict)  # means since the previous report, e.g. {"loss": 0.1}


def as_embeddings(values: np.ndarray, what: str = "embeddings") -> torch.Tensor:
    """``values`` (n, e), n >= 2, finite, as a float32 tensor; anything else is a one-line error."""
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 2 or len(array) < 2 or array.shape[1] < 1:
        raise NeuralShapesError(f"{what}: need at least 2 rows of values, got an array of shape {array.shape}")
    if not np.isfinite(array).all():
        raise NeuralShapesError(f"{what}: not all values are finite")
    return torch.from_numpy(array.copy())


def as_labels(labels: np.ndarray, class_names: Sequence[str], count: int) -> torch.Tensor:
    """``labels`` (count,) class indices into ``class_names`` as int64, each class used at least once."""
    array = np.asarray(labels)
    if array.shape != (count,) or not np.issubdtype(array.dtype, np.integer):
        raise NeuralShapesError(
            f"labels: need {count} integer class indices, got an array of shape {array.shape} ({array.dtype})"
        )
    if len(set(class_names)) != len(class_names) or not class_names:
        raise NeuralShapesError(f"class names must be distinct and not empty, got {list(class_names)}")
    if array.min() < 0 or array.max() >= len(class_names):
        raise NeuralShapesError(
            f"labels must be between 0 and {len(class_names) - 1} (one per class name), got {array.min()}..{array.max()}"
        )
    unused = [name for label, name in enumerate(class_names) if not (array == label).any()]
    if unused:
        raise NeuralShapesError(f"class '{unused[0]}' has no embeddings; leave out classes without examples")
    return torch.from_numpy(array.astype(np.int64))


class Standardiser(torch.nn.Module):
    """forward(x (n, e)) -> (x - mean) / scale; :meth:`restore` inverts it. Both are buffers (saved)."""

    def __init__(self, size: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("scale", torch.ones(size))

    @classmethod
    def of(cls, data: torch.Tensor) -> Standardiser:
        """Mean and standard deviation per dimension of ``data`` (n, e); constant dimensions get scale 1."""
        standardiser = cls(data.shape[1])
        std = data.std(dim=0)
        standardiser.mean.copy_(data.mean(dim=0))
        standardiser.scale.copy_(torch.where(std > MIN_SCALE, std, torch.ones_like(std)))
        return standardiser

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale

    def restore(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.scale + self.mean


def mlp(sizes: Sequence[int], batch_norm: bool = False) -> torch.nn.Sequential:
    """Linear layers sizes[0] -> ... -> sizes[-1], each but the last followed by (batch norm and) ReLU."""
    layers: list[torch.nn.Module] = []
    for a, b in pairwise(sizes):
        if layers:  # between two linear layers
            layers += [torch.nn.BatchNorm1d(a), torch.nn.ReLU()] if batch_norm else [torch.nn.ReLU()]
        layers.append(torch.nn.Linear(a, b))
    return torch.nn.Sequential(*layers)


def report_every(total: int) -> int:
    """Steps between progress reports so a run of ``total`` steps gives about :data:`REPORTS`."""
    return max(1, -(-total // REPORTS))


@dataclass(frozen=True)
class Minibatches:
    """How :func:`train_supervised` steps: AdamW over shuffled minibatches, for whole epochs."""

    epochs: int
    batch_size: int
    learning_rate: float  # constant, or the peak of a one-cycle schedule
    weight_decay: float
    one_cycle: bool
    seed: int

    @classmethod
    def of(cls, settings: Any, one_cycle: bool) -> Minibatches:
        """The plan of a task's ``settings`` (its epochs, batch size, learning rate, weight decay and seed)."""
        return cls(
            settings.epochs,
            settings.batch_size,
            settings.learning_rate,
            settings.weight_decay,
            one_cycle,
            settings.seed,
        )


def train_supervised(
    network: torch.nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    plan: Minibatches,
    progress: Callable[[TaskProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> dict[str, float]:
    """Train ``network`` on (inputs, targets) pairs; returns {"steps", "seconds", "final_loss"} and
    leaves the network in eval mode. The last incomplete batch of an epoch is dropped, so batch norm
    never sees a batch of one row."""
    count = len(inputs)
    batch = min(plan.batch_size, count)
    per_epoch = count // batch
    total = plan.epochs * per_epoch
    optimizer = torch.optim.AdamW(network.parameters(), lr=plan.learning_rate, weight_decay=plan.weight_decay)
    schedule = (
        torch.optim.lr_scheduler.OneCycleLR(optimizer, plan.learning_rate, total_steps=total)
        if plan.one_cycle
        else None
    )
    generator = torch.Generator().manual_seed(plan.seed)
    every = report_every(total)
    network.train()
    started, step, running, since, loss_value = time.perf_counter(), 0, 0.0, 0, float("nan")
    for _ in range(plan.epochs):
        order = torch.randperm(count, generator=generator)
        for start in range(0, per_epoch * batch, batch):
            check_cancel(cancel, "training cancelled")
            rows = order[start : start + batch]
            loss = loss_of(network(inputs[rows]), targets[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            step, running, since = step + 1, running + loss.item(), since + 1
            if step % every == 0 or step == total:
                loss_value, running, since = running / since, 0.0, 0
                if progress is not None:
                    progress(TaskProgress(step, total, {"loss": loss_value}))
    network.eval()
    return {"steps": step, "seconds": round(time.perf_counter() - started, 2), "final_loss": loss_value}
