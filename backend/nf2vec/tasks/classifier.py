"""A shape classifier on nf2vec embeddings: an MLP from a (standardised) embedding to class
probabilities, the downstream network of inr2vec / nf2vec's classification experiments.

Paper (inr2vec appendix): linear layers to 512, 256 and the classes with batch norm and ReLU between,
softmax, AdamW with weight decay 1e-2, a one-cycle learning rate schedule peaking at 1e-4, minibatches
of 256, 150 epochs. We keep all of it but the peak learning rate, 1e-3: with a few hundred to a thousand
embeddings an epoch is only a few steps, and 1e-4 leaves the classifier far from trained after 150
epochs. Not done here: the paper's E-Stitchup augmentation and model selection on a validation split.
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
    as_labels,
    mlp,
    train_supervised,
)
from backend.nf2vec.tasks.task_file import load_classes_task, save_task_file

TASK = "classifier"


@dataclass(frozen=True)
class ClassifierSettings:
    """Sizes and training of the classifier (see the module docstring for the paper's values)."""

    hidden: tuple[int, ...] = (512, 256)
    epochs: int = 150
    batch_size: int = 256
    learning_rate: float = 1e-3  # the peak of the one-cycle schedule
    weight_decay: float = 1e-2
    seed: int = 0

    def __post_init__(self) -> None:
        if min((*self.hidden, self.epochs, self.batch_size)) < 1 or not self.learning_rate > 0 or self.weight_decay < 0:
            raise ValueError(f"classifier sizes, epochs and learning rate must be positive, got {self}")


@dataclass
class EmbeddingClassifier:
    """A trained classifier; output column i is the probability of ``class_names[i]``."""

    settings: ClassifierSettings
    class_names: tuple[str, ...]
    standardiser: Standardiser
    network: torch.nn.Module  # standardised embedding -> class logits
    training: dict[str, Any] = field(default_factory=dict)  # steps, seconds, final loss, train accuracy

    @property
    def embedding_size(self) -> int:
        return self.standardiser.mean.shape[0]

    def parts(self) -> dict[str, torch.nn.Module]:
        return {"network": self.network, "standardiser": self.standardiser}

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        """Class probabilities (n, classes) float32 of ``embeddings`` (n, embedding_size); rows sum to 1."""
        data = torch.from_numpy(np.asarray(embeddings, dtype=np.float32).reshape(-1, self.embedding_size))
        self.network.eval()
        with torch.inference_mode():
            return torch.softmax(self.network(self.standardiser(data)), dim=1).numpy()


def train_classifier(
    embeddings: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    settings: ClassifierSettings = ClassifierSettings(),
    progress: Callable[[TaskProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> EmbeddingClassifier:
    """Train on ``embeddings`` (n, e) with ``labels`` (n,) indices into ``class_names`` (two or more,
    each with an example); ``training`` records the final loss and the accuracy on these embeddings."""
    data = as_embeddings(embeddings)
    targets = as_labels(labels, class_names, len(data))
    if len(class_names) < 2:
        raise NeuralShapesError(f"a classifier needs at least two classes, got {list(class_names)}")
    torch.manual_seed(settings.seed)
    classifier = EmbeddingClassifier(
        settings, tuple(class_names), Standardiser.of(data), _network(settings, data.shape[1], len(class_names))
    )
    plan = Minibatches.of(settings, one_cycle=True)
    record = train_supervised(
        classifier.network, classifier.standardiser(data), targets, F.cross_entropy, plan, progress, cancel
    )
    accuracy = float((classifier.predict(data.numpy()).argmax(axis=1) == targets.numpy()).mean())
    classifier.training = {**record, "embeddings": len(data), "train_accuracy": accuracy}
    return classifier


def save_classifier(folder: Path, classifier: EmbeddingClassifier) -> Path:
    """Write ``folder/classifier.safetensors`` next to the nf2vec model in ``folder`` (layout: :mod:`backend.nf2vec.tasks.task_file`)."""
    return save_task_file(folder, TASK, classifier, classifier.class_names)


def load_classifier(folder: Path, model: Nf2vecModel) -> EmbeddingClassifier:
    """Read ``folder/classifier.safetensors`` for ``model``'s embeddings; a bad file is a one-line :class:`NeuralShapesError`."""
    return load_classes_task(folder, TASK, model, EmbeddingClassifier, ClassifierSettings, _network)


def _network(settings: ClassifierSettings, embedding_size: int, classes: int) -> torch.nn.Module:
    return mlp((embedding_size, *settings.hidden, classes), batch_norm=True)
