"""In-betweens of two neural shapes: in nf2vec's embedding space, or directly in weight space.

Embedding space (nf2vec, section V): ``e(t) = (1 - t) e(A) + t e(B)``, decoded and fitted back to a
shape of the family (:mod:`backend.nf2vec.decoding`). Weight space: ``w(t) = (1 - t) w(A) + t w(B)``,
valid for shapes fitted from one shared initialisation (nf2vec's linear mode connectivity; every shape of
a family starts from its initial weights); no decoding or fitting, so it is instant, but the in-betweens
have no reference surface and their quality metrics are NaN ("not measured").

Either way an in-between is placed by interpolating the two frames: the scale geometrically, the
centre linearly.
"""

from __future__ import annotations

import threading
from typing import Literal

import numpy as np

from backend.errors import NeuralShapesError
from backend.nf2vec.decoding import DecodeSettings, OperationProgress, derived_provenance, shapes_from_embeddings
from backend.nf2vec.embedding import embed
from backend.nf2vec.ops.tools import Nf2vecTools
from backend.shapes.frame import Similarity
from backend.shapes.shape_file import NeuralShape

Space = Literal["embedding", "weights"]


def in_between_times(count: int) -> list[float]:
    """``count`` evenly spaced t strictly between 0 and 1 (the ends are the inputs themselves)."""
    if count < 1:
        raise NeuralShapesError(f"the number of in-betweens must be at least 1, got {count}")
    return [float(t) for t in np.linspace(0.0, 1.0, count + 2)[1:-1]]


def interpolate(
    tools: Nf2vecTools,
    a: NeuralShape,
    b: NeuralShape,
    times: list[float],
    space: Space = "embedding",
    settings: DecodeSettings = DecodeSettings(),
    progress: OperationProgress | None = None,
    cancel: threading.Event | None = None,
) -> list[NeuralShape]:
    """Shapes at each t of ``times`` (0 = ``a``, 1 = ``b``; values outside [0, 1] extrapolate), named A-B-tNNN."""
    model, family = tools.model, tools.family
    if space not in ("embedding", "weights"):
        raise NeuralShapesError(f"interpolation space must be 'embedding' or 'weights', got '{space}'")
    if not times or not all(np.isfinite(times)):
        raise NeuralShapesError("interpolation needs at least one finite t")
    for shape in (a, b):
        if shape.family_id != family.family_id:
            raise NeuralShapesError(
                f"shape '{shape.name}' is of family {shape.family_id}; interpolation works on "
                f"shapes of family {family.family_id}"
            )
    names = [f"{a.name}-{b.name}-t{round(t * 1000):03d}" for t in times]
    frames = [interpolated_frame(a.transform, b.transform, t) for t in times]
    provenance = [
        derived_provenance(f"interpolate-{space}", name, [a, b], model, t=f"{t:g}") for name, t in zip(names, times)
    ]
    if space == "weights":
        return [
            _weight_in_between(a, b, t, name, frame, extra)
            for t, name, frame, extra in zip(times, names, frames, provenance)
        ]
    ends = embed(model, [a, b])
    codes = np.stack([(1.0 - t) * ends[0] + t * ends[1] for t in times]).astype(np.float32)
    return shapes_from_embeddings(
        tools,
        codes,
        names,
        frames,
        provenance,
        settings,
        progress,
        cancel,
        anchors=[(ends[0], a.weights), (ends[1], b.weights)],
    )


def interpolated_frame(a: Similarity, b: Similarity, t: float) -> Similarity:
    """The frame between two: scale interpolated geometrically (sizes change evenly), centre linearly."""
    scale = float(np.exp((1.0 - t) * np.log(a.scale) + t * np.log(b.scale)))
    return Similarity(scale=scale, centre=(1.0 - t) * a.centre + t * b.centre)


def _weight_in_between(
    a: NeuralShape, b: NeuralShape, t: float, name: str, frame: Similarity, provenance: dict[str, str]
) -> NeuralShape:
    weights = [((1 - t) * wa + t * wb, (1 - t) * ba + t * bb) for (wa, ba), (wb, bb) in zip(a.weights, b.weights)]
    weights = [(w.astype(np.float32), bias.astype(np.float32)) for w, bias in weights]
    nan = float("nan")
    metrics = {"surface_error": nan, "chamfer": nan, "fscore": nan, "final_loss": 0.0, "fit_seconds": 0.0, "steps": 0.0}
    return NeuralShape(name, a.architecture, a.family_id, weights, frame, metrics, provenance)
