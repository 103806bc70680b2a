"""A transfer network between nf2vec embeddings: an MLP from one embedding to another, trained with
the mean squared error on (input, target) pairs. nf2vec completes shapes with it: the input is the
embedding of a partial shape, the target that of the complete shape it was cut from.

Paper (inr2vec appendix): 8 linear layers, every hidden one as wide as the embedding, batch norm and
ReLU between, L2 loss, AdamW with a constant learning rate and weight decay of 1e-4, trained until
reconstructions stop improving on a validation split. Our defaults are 4 layers and a learning rate of
1e-3 for a fixed number of epochs, which fit a few hundred pairs in seconds on a CPU; the paper's depth
is a setting away. Inputs and targets are standardised separately; the loss is on standardised targets.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from backend.errors import NeuralShapesError
from backend.nf2vec.model import Nf2vecModel
from backend.nf2vec.tasks.downstream import (
    Minibatches,
    Standardiser,
    TaskProgress,
    as_embeddings,
    mlp,
    train_supervised,
)
from backend.nf2vec.tasks.task_file import TaskFile, load_task_file, save_task_file

TASK = "transfer"


@dataclass(frozen=True)
class TransferSettings:
    """Sizes and training of the transfer network (see the module docstring for the paper's values)."""

    layers: int = 4  # linear layers, at least 2
    hidden: int | None = None  # width of the hidden layers; None: the embedding size (the paper's)
    epochs: int = 300
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.layers < 2 or min(self.hidden or 1, self.epochs, self.batch_size) < 1 or not self.learning_rate > 0:
            raise ValueError(
                f"transfer network needs 2+ layers and positive sizes, epochs and learning rate, got {self}"
            )


@dataclass
class TransferNet:
    """A trained map from embeddings to embeddings of the same nf2vec model."""

    settings: TransferSettings
    inputs: Standardiser
    targets: Standardiser
    network: torch.nn.Module  # standardised input -> standardised target
    training: dict[str, Any] = field(default_factory=dict)  # steps, seconds, final loss, mse, identity_mse

    @property
    def embedding_size(self) -> int:
        return self.inputs.mean.shape[0]

    def parts(self) -> dict[str, torch.nn.Module]:
        return {"network": self.network, "inputs": self.inputs, "targets": self.targets}

    def apply(self, embeddings: np.ndarray) -> np.ndarray:
        """The mapped embeddings (n, embedding_size) float32 of ``embeddings`` (n, embedding_size)."""
        data = torch.from_numpy(np.asarray(embeddings, dtype=np.float32).reshape(-1, self.embedding_size))
        self.network.eval()
        with torch.inference_mode():
            return self.targets.restore(self.network(self.inputs(data))).numpy()


def train_transfer(
    inputs: np.ndarray,
    targets: np.ndarray,
    settings: TransferSettings = TransferSettings(),
    progress: Callable[[TaskProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> TransferNet:
    """Train on pairs: ``inputs[i]`` (n, e) should map to ``targets[i]`` (n, e). ``training`` records the
    mean squared error over the pairs in embedding units ("mse") and that of leaving inputs unchanged
    ("identity_mse"), the baseline the network has to beat."""
    source, target = as_embeddings(inputs, "transfer inputs"), as_embeddings(targets, "transfer targets")
    if source.shape != target.shape:
        raise NeuralShapesError(
            f"transfer inputs {tuple(source.shape)} and targets {tuple(target.shape)} must pair up one to one"
        )
    torch.manual_seed(settings.seed)
    transfer = TransferNet(
        settings, Standardiser.of(source), Standardiser.of(target), _network(settings, source.shape[1])
    )
    plan = Minibatches.of(settings, one_cycle=False)
    record = train_supervised(
        transfer.network, transfer.inputs(source), transfer.targets(target), F.mse_loss, plan, progress, cancel
    )
    mapped = torch.from_numpy(transfer.apply(source.numpy()))
    transfer.training = {
        **record,
        "pairs": len(source),
        "mse": float(F.mse_loss(mapped, target)),
        "identity_mse": float(F.mse_loss(source, target)),
    }
    return transfer


def save_transfer(folder: Path, transfer: TransferNet) -> Path:
    """Write ``folder/transfer.safetensors`` next to the nf2vec model in ``folder`` (layout: :mod:`backend.nf2vec.tasks.task_file`)."""
    return save_task_file(folder, TASK, transfer)


def load_transfer(folder: Path, model: Nf2vecModel) -> TransferNet:
    """Read ``folder/transfer.safetensors`` for ``model``'s embeddings; a bad file is a one-line :class:`NeuralShapesError`."""

    def build(content: TaskFile) -> TransferNet:
        settings = TransferSettings(**content.config)
        size = content.embedding_size
        return TransferNet(settings, Standardiser(size), Standardiser(size), _network(settings, size), content.training)

    return load_task_file(folder, TASK, model, build)


def _network(settings: TransferSettings, embedding_size: int) -> torch.nn.Module:
    width = settings.hidden or embedding_size
    return mlp((embedding_size, *[width] * (settings.layers - 1), embedding_size), batch_norm=True)
