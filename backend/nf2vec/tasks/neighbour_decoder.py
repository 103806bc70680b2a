"""The neighbour decoder: an embedding decoded as a blend of the nets of its nearest training shapes.

nf2vec's implicit decoder (:mod:`backend.nf2vec.decoder`) learns one network for every shape's field;
trained on a 2-core CPU for well under an hour, its decoded surfaces are still crude (see README). The
neighbour decoder needs no training: it keeps the embeddings and weights of the training shapes
(anchors) and decodes an embedding ``e`` to the net whose weights are

    w_e = sum_i a_i w_i,   a = softmax(-|e - e_i|^2 / temperature) over the k nearest anchors.

All anchors are nets of one family, fitted from one shared initialisation, so blends of their weights
are shapes too (nf2vec's linear mode connectivity; weight-space interpolation relies on the same). We
blend weights rather than fields: a convex blend of the signed distance fields of two shapes that do
not overlap is positive everywhere, so mid-way embeddings decoded to empty space (measured: 20% of
in-betweens), while weight blends stayed closed shapes. The temperature is a quarter of the median
squared distance from an anchor to its nearest other anchor: an embedding at an anchor decodes to
(almost only, ~2% for a typical neighbour) that anchor, one between anchors to a blend. Operations may
add anchors of their own (interpolation adds its two ends, so t = 0 and t = 1 decode to the inputs).

Saved as ``neighbours.safetensors`` in the model folder (the task-file envelope of :mod:`backend.nf2vec.tasks.task_file`);
the anchor weights are stored as float16, like ``fit --half`` shapes (7553 weights = 15 KB per anchor).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.errors import NeuralShapesError
from backend.nf2vec.model import Nf2vecModel
from backend.nf2vec.tasks.task_file import TaskFile, load_task_file, save_task_file
from backend.shapes.architecture import Architecture, Weights
from backend.shapes.network import batched_forward, stacked_parameters

TASK = "neighbours"
POINTS_PER_CALL = 65_536  # field queries per forward pass: bounds memory, keeps activations cache-sized


@dataclass(frozen=True)
class NeighbourSettings:
    k: int = 8  # anchors blended per embedding

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"the neighbour decoder needs k >= 1, got {self.k}")


class Anchors(torch.nn.Module):
    """Embeddings (n, e) and stacked weights of the anchor shapes, as buffers (so they save as a state dict)."""

    def __init__(self, architecture: Architecture, count: int, embedding_size: int):
        super().__init__()
        self.register_buffer("embeddings", torch.zeros(count, embedding_size))
        self.register_buffer("temperature", torch.ones(()))
        sizes = architecture.layer_sizes
        for layer, (fan_in, fan_out) in enumerate(pairwise(sizes)):
            self.register_buffer(f"weight_{layer}", torch.zeros(count, fan_out, fan_in, dtype=torch.float16))
            self.register_buffer(f"bias_{layer}", torch.zeros(count, fan_out, dtype=torch.float16))
        self.layers = len(sizes) - 1

    def parameters_of(self, rows: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Float32 weights and biases of the anchors ``rows``, ready for :func:`batched_forward`."""
        return (
            [getattr(self, f"weight_{i}")[rows].float() for i in range(self.layers)],
            [getattr(self, f"bias_{i}")[rows].float() for i in range(self.layers)],
        )


@dataclass
class NeighbourDecoder:
    """Decodes embeddings of one nf2vec model to blended fields of the anchor shapes' nets."""

    settings: NeighbourSettings
    architecture: Architecture
    anchors: Anchors
    names: list[str]
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def embedding_size(self) -> int:
        return int(self.anchors.embeddings.shape[1])

    def parts(self) -> dict[str, torch.nn.Module]:
        return {"anchors": self.anchors}

    def field(
        self, embedding: np.ndarray, points: np.ndarray, extra: list[tuple[np.ndarray, Weights]] = ()
    ) -> np.ndarray:
        """The decoded field of ``embedding`` (e,) at ``points`` (q, 3), normalised frame -> (q,) float32.

        ``extra``: more anchors (embedding, weights) for this call only.
        """
        weights, biases = self.blended_parameters(embedding, extra)
        out = np.empty(len(points), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(points), POINTS_PER_CALL):
                chunk = torch.as_tensor(points[start : start + POINTS_PER_CALL], dtype=torch.float32)[None]
                out[start : start + chunk.shape[1]] = batched_forward(self.architecture, weights, biases, chunk)[
                    0
                ].numpy()
        return out

    def blended_parameters(
        self, embedding: np.ndarray, extra: list[tuple[np.ndarray, Weights]] = ()
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Weights (1, out, in) and biases (1, out) per layer of the decoded net of ``embedding`` (e,)."""
        weights, biases, distances = self._nearest(torch.as_tensor(embedding, dtype=torch.float32), extra)
        blend = torch.softmax(-distances / self.anchors.temperature, dim=0)
        return (
            [(blend[:, None, None] * w).sum(dim=0, keepdim=True) for w in weights],
            [(blend[:, None] * b).sum(dim=0, keepdim=True) for b in biases],
        )

    def _nearest(self, embedding: torch.Tensor, extra: list[tuple[np.ndarray, Weights]]):
        """Weights and biases of the k nearest anchors (stored and extra) and their squared distances."""
        stored = ((self.anchors.embeddings - embedding) ** 2).sum(dim=1)
        order = torch.argsort(stored)[: self.settings.k]
        weights, biases = self.anchors.parameters_of(order)
        distances = stored[order]
        if extra:
            extra_weights, extra_biases = stacked_parameters([w for _, w in extra])
            extra_codes = torch.as_tensor(np.stack([code for code, _ in extra]), dtype=torch.float32)
            weights = [torch.cat([a, b]) for a, b in zip(weights, extra_weights)]
            biases = [torch.cat([a, b]) for a, b in zip(biases, extra_biases)]
            distances = torch.cat([distances, ((extra_codes - embedding) ** 2).sum(dim=1)])
        return weights, biases, distances


def build_neighbour_decoder(
    embeddings: np.ndarray,
    weights: list[Weights],
    names: list[str],
    architecture: Architecture,
    settings: NeighbourSettings = NeighbourSettings(),
) -> NeighbourDecoder:
    """Anchors from training shapes: embeddings (n, e) and their weights; at least two."""
    if len(embeddings) < 2 or len(embeddings) != len(weights):
        raise NeuralShapesError(f"the neighbour decoder needs two or more shapes with embeddings, got {len(weights)}")
    anchors = Anchors(architecture, len(weights), embeddings.shape[1])
    codes = torch.as_tensor(embeddings, dtype=torch.float32)
    anchors.embeddings.copy_(codes)
    squared = torch.cdist(codes, codes) ** 2
    squared.fill_diagonal_(float("inf"))
    anchors.temperature.fill_(float(squared.min(dim=1).values.median()) / 4)
    stacked_weights, stacked_biases = stacked_parameters(weights)
    for layer, (w, b) in enumerate(zip(stacked_weights, stacked_biases)):
        getattr(anchors, f"weight_{layer}").copy_(w.half())
        getattr(anchors, f"bias_{layer}").copy_(b.half())
    training = {"anchors": list(names), "temperature": float(anchors.temperature)}
    return NeighbourDecoder(settings, architecture, anchors, list(names), training)


def save_neighbour_decoder(folder: Path, decoder: NeighbourDecoder) -> Path:
    """Write ``folder/neighbours.safetensors`` next to the nf2vec model in ``folder`` (``training`` names the anchors)."""
    return save_task_file(folder, TASK, decoder)


def load_neighbour_decoder(folder: Path, model: Nf2vecModel) -> NeighbourDecoder:
    """Read ``folder/neighbours.safetensors`` for ``model``; a bad file is a one-line :class:`NeuralShapesError`."""

    def build(content: TaskFile) -> NeighbourDecoder:
        settings = NeighbourSettings(**content.config)
        names = [str(name) for name in content.training["anchors"]]
        anchors = Anchors(model.architecture, len(names), content.embedding_size)
        return NeighbourDecoder(settings, model.architecture, anchors, names, content.training)

    return load_task_file(folder, TASK, model, build)
