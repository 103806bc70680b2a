"""Embeddings of neural shapes and nearest neighbours among them.

Neighbours are by Euclidean (L2) distance between embeddings, as nf2vec's retrieval experiments use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from backend.nf2vec.model import Nf2vecModel, check_family
from backend.shapes.shape_file import NeuralShape

CHUNK = 64  # shapes per encoder call: bounds memory, and measured fastest on a 2-core CPU (16..256)


@dataclass(frozen=True)
class Neighbour:
    index: int  # into the library list
    distance: float  # L2 distance between embeddings


def embed(model: Nf2vecModel, shapes: list[NeuralShape]) -> np.ndarray:
    """Embeddings (n, embedding_size) float32 of shapes of the model's family (eval mode: deterministic,
    independent of which other shapes are embedded with them)."""
    check_family(model, shapes)
    model.encoder.eval()
    out = np.zeros((len(shapes), model.config.embedding_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(shapes), CHUNK):
            chunk = [shape.weights for shape in shapes[start : start + CHUNK]]
            out[start : start + len(chunk)] = model.encoder(model.encoder_inputs(chunk)).numpy()
    return out


def similar(model: Nf2vecModel, query: NeuralShape, library: list[NeuralShape], k: int = 5) -> list[Neighbour]:
    """The ``k`` library shapes nearest to ``query`` in embedding space, nearest first."""
    embeddings = embed(model, [query, *library])
    return nearest(embeddings[0], embeddings[1:], k)


def nearest(query: np.ndarray, embeddings: np.ndarray, k: int) -> list[Neighbour]:
    """The ``k`` rows of ``embeddings`` (n, e) nearest to ``query`` (e,), nearest first (ties by index)."""
    distances = np.linalg.norm(embeddings - query, axis=1)
    order = np.argsort(distances, kind="stable")[:k]
    return [Neighbour(int(i), float(distances[i])) for i in order]
