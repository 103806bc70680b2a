"""Completing a partial shape: nf2vec's transfer network from partial to complete embeddings.

The transfer network is trained on pairs (a collection mesh cut open, fitted as an ordinary shape ->
the whole mesh's shape), each normalised in its own frame, so it predicts the complete shape in *its*
normalised frame: scale and position relative to the partial are not known from the embedding alone.
The completed shape is placed by registering the partial onto it: the scale and offset that put the
partial's surface points on the completed zero level set (trimmed L1 of the completed field at the
moved points, so the patch a fitter closes an open cut with does not pull the fit).
"""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import torch

from backend.meshes.extraction import extract_mesh
from backend.meshes.metrics import surface_samples
from backend.nf2vec.decoding import (
    IDENTITY,
    DecodeSettings,
    OperationProgress,
    derived_provenance,
    shapes_from_embeddings,
)
from backend.nf2vec.embedding import embed
from backend.nf2vec.ops.tools import Nf2vecTools
from backend.nf2vec.tasks.transfer import load_transfer
from backend.shapes.frame import Similarity
from backend.shapes.network import BatchedSDF
from backend.shapes.shape_file import NeuralShape

REGISTRATION_POINTS = 4096
REGISTRATION_STEPS = 300
KEPT_FRACTION = 0.7  # of the points, the best-fitting ones count in the registration loss


def complete(
    tools: Nf2vecTools,
    partial: NeuralShape,
    settings: DecodeSettings = DecodeSettings(),
    progress: OperationProgress | None = None,
    cancel: threading.Event | None = None,
) -> NeuralShape:
    """The completed shape of ``partial`` (of the tools' family), placed over the partial; named NAME-completed."""
    transfer = tools.task("transfer", load_transfer)
    code = transfer.apply(embed(tools.model, [partial]))
    name = f"{partial.name}-completed"
    provenance = [derived_provenance("complete", name, [partial], tools.model)]
    report = progress or (lambda fraction, message: None)
    [completed] = shapes_from_embeddings(
        tools,
        code,
        [name],
        [IDENTITY],
        provenance,
        settings,
        lambda fraction, message: report(0.95 * fraction, message),
        cancel,
    )
    report(0.95, "placing the completed shape over the partial")
    scale, offset = register(partial, completed)
    # x_completed = scale * x_partial + offset, and x_partial = s_p (x_source - c_p): compose the frames.
    frame = Similarity(
        scale=scale * partial.transform.scale,
        centre=partial.transform.centre - offset / (scale * partial.transform.scale),
    )
    report(1.0, "done")
    return replace(completed, transform=frame)


def register(partial: NeuralShape, completed: NeuralShape, seed: int = 0) -> tuple[float, np.ndarray]:
    """Scale s and offset t (3,) with ``s * x + t`` moving the partial's surface (its normalised frame)
    onto the completed shape's zero level set (its normalised frame)."""
    surface = extract_mesh(partial.architecture, partial.weights, 96)
    if len(surface.faces) == 0:
        return 1.0, np.zeros(3)
    points = torch.from_numpy(surface_samples(surface.vertices, surface.faces, REGISTRATION_POINTS, seed=seed))
    field = BatchedSDF(completed.architecture, [completed.weights]).requires_grad_(False)
    log_scale = torch.tensor(np.log(0.85), requires_grad=True)  # a part is smaller than the whole it belongs to
    offset = torch.zeros(3, requires_grad=True)
    optimizer = torch.optim.Adam([log_scale, offset], lr=1e-2)
    kept = int(KEPT_FRACTION * len(points))
    for _ in range(REGISTRATION_STEPS):
        moved = torch.exp(log_scale) * points + offset
        residuals = field(moved[None])[0].abs()
        loss = torch.topk(residuals, kept, largest=False).values.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return float(torch.exp(log_scale.detach())), offset.detach().numpy().astype(np.float64)
