"""From embeddings back to ordinary neural shapes of the model's family.

An embedding is decoded to a signed distance grid over the normalised cube, meshed by marching cubes
(the *decoded surface*), and the family's small MLP is then fitted to that surface from the family's
initial weights, exactly as a mesh is converted. So every shape nf2vec makes (in-betweens, generated,
completed) renders, meshes and stores like any other neural shape, and its metrics say how closely its
net follows the decoded surface.

Two decoders: ``neighbours`` (default; :mod:`backend.nf2vec.tasks.neighbour_decoder`, a blend of the weights of
the nearest training shapes) and ``implicit`` (nf2vec's trained decoder, :mod:`backend.nf2vec.decoder`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import torch
import trimesh

from backend import __version__
from backend.errors import NeuralShapesError, check_cancel
from backend.fitting.batched import FitProgress, FitSettings, OpenMeshes, fit_shapes
from backend.fitting.pipeline import evaluate_shape, fitted_shape
from backend.meshes.extraction import clip_to_bounding_sphere, marching_cubes
from backend.meshes.loading import NormalisedMesh, normalise_mesh
from backend.nf2vec.decoder import to_signed_distance
from backend.nf2vec.model import Nf2vecModel
from backend.nf2vec.ops.tools import Nf2vecTools
from backend.nf2vec.tasks.neighbour_decoder import POINTS_PER_CALL, TASK, load_neighbour_decoder
from backend.shapes.architecture import Weights
from backend.shapes.frame import CUBE_HALF_SIZE, Similarity
from backend.shapes.shape_file import NeuralShape

# What a long operation reports: the fraction done (0..1) and a one-line message.
OperationProgress = Callable[[float, str], None]

IDENTITY = Similarity(scale=1.0, centre=np.zeros(3))
Decoder = Literal["neighbours", "implicit"]
Anchor = tuple[np.ndarray, Weights]  # an extra anchor of the neighbour decoder: embedding (e,), weights


@dataclass(frozen=True)
class DecodeSettings:
    """How embeddings become neural shapes: the decoder, its grid over the cube, the filter of small
    bodies, and ``fit``, the fit of the family's net to the decoded surface (32 K samples and at most
    1,500 steps keep one shape to a few seconds on a CPU)."""

    decoder: Decoder = "neighbours"
    resolution: int = 96  # 64^3 broke thin parts (table legs) off the decoded surface
    # Bodies smaller than this fraction of the largest one's area are dropped. An undertrained implicit
    # decoder leaves small stray pockets (0.1 removes them); the neighbour decoder does not, and there
    # the filter would only drop real thin parts, so it is off by default.
    min_body_fraction: float = 0.0
    # Open meshes (a partial to complete) read as the solids nf2vec's models were trained on, not as shells.
    fit: FitSettings = FitSettings(samples=32_768, max_steps=1500, open_meshes=OpenMeshes.SOLID)
    evaluation_resolution: int = 128  # marching cubes grid of the fitted net for its Chamfer / F-score


def decode_grid(
    tools: Nf2vecTools, embedding: np.ndarray, settings: DecodeSettings = DecodeSettings(), anchors: list[Anchor] = ()
) -> np.ndarray:
    """Decoded signed distances on a regular grid over the normalised cube, clipped to the bounding sphere.

    embedding (e,) -> (r, r, r) float32 indexed [x, y, z], negative inside (as :func:`backend.meshes.extraction.sdf_grid`).
    ``anchors``: extra anchors for the neighbour decoder (ignored by the implicit one).
    """
    resolution = settings.resolution
    axis = np.linspace(-CUBE_HALF_SIZE, CUBE_HALF_SIZE, resolution, dtype=np.float32)
    points = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    if settings.decoder == "neighbours":
        values = tools.task(TASK, load_neighbour_decoder).field(embedding, points, anchors)
    elif settings.decoder == "implicit":
        values = _implicit_field(tools.model, embedding, points)
    else:
        raise NeuralShapesError(f"unknown decoder '{settings.decoder}' (neighbours or implicit)")
    return clip_to_bounding_sphere(values, points).reshape(resolution, resolution, resolution)


def _implicit_field(model: Nf2vecModel, embedding: np.ndarray, points: np.ndarray) -> np.ndarray:
    """nf2vec's decoder at points (q, 3) for one embedding (e,) -> (q,) float32 signed distances."""
    code = torch.as_tensor(embedding, dtype=torch.float32).reshape(1, -1)
    values = np.empty(len(points), dtype=np.float32)
    model.decoder.eval()
    with torch.inference_mode():
        for start in range(0, len(points), POINTS_PER_CALL):
            chunk = torch.from_numpy(points[start : start + POINTS_PER_CALL])[None]
            values[start : start + len(chunk[0])] = to_signed_distance(model.decoder(chunk, code), model.config)[
                0
            ].numpy()
    return values


def decoded_surface(
    tools: Nf2vecTools,
    embedding: np.ndarray,
    name: str,
    settings: DecodeSettings = DecodeSettings(),
    anchors: list[Anchor] = (),
) -> NormalisedMesh:
    """The decoded surface of an embedding as a checked mesh in the normalised frame (identity transform),
    without bodies smaller than ``settings.min_body_fraction`` of the largest.

    A field without a zero crossing (nothing inside, or everything) is a one-line :class:`NeuralShapesError`.
    """
    surface = marching_cubes(decode_grid(tools, embedding, settings, anchors))
    if len(surface.faces) == 0:
        raise NeuralShapesError(f"{name}: the decoded field has no surface (the embedding decodes to empty space)")
    bodies = surface.split(only_watertight=False) if settings.min_body_fraction > 0 else [surface]
    if len(bodies) > 1:
        largest = max(body.area for body in bodies)
        surface = trimesh.util.concatenate(
            [body for body in bodies if body.area >= settings.min_body_fraction * largest]
        )
    digest = hashlib.sha256(np.asarray(embedding, dtype=np.float32).tobytes()).hexdigest()
    return normalise_mesh(surface.vertices, surface.faces, name=name, source_sha256=digest, transform=IDENTITY)


def shapes_from_embeddings(
    tools: Nf2vecTools,
    embeddings: np.ndarray,
    names: list[str],
    transforms: list[Similarity],
    provenance: list[dict[str, str]],
    settings: DecodeSettings = DecodeSettings(),
    progress: OperationProgress | None = None,
    cancel: threading.Event | None = None,
    anchors: list[Anchor] = (),
) -> list[NeuralShape]:
    """One neural shape of the tools' family per embedding (n, e): decoded, meshed, fitted in one batch, evaluated.

    ``transforms``: each result's frame (normalised -> the frame it is placed in); ``provenance``: extra
    provenance entries per shape (e.g. the operation and its inputs); ``anchors``: extra anchors for the
    neighbour decoder. Progress: decoding takes the first 20%, fitting 70%, evaluation the rest.
    """
    family = tools.family
    report = progress or (lambda fraction, message: None)
    count = len(embeddings)
    surfaces = []
    for index, (embedding, name) in enumerate(zip(embeddings, names)):
        check_cancel(cancel, "cancelled")
        report(0.2 * index / count, f"decoding {index + 1}/{count}")
        surfaces.append(decoded_surface(tools, embedding, name, settings, anchors))
    steps = settings.fit.max_steps

    def on_fit(event: FitProgress) -> None:
        if event.stage == "fitting":
            report(
                0.2 + 0.7 * min(event.step / steps, 1.0),
                f"fitting {count} shape{'s' if count > 1 else ''}: step {event.step}",
            )

    results = fit_shapes(family, surfaces, settings.fit, progress=on_fit, cancel=cancel)
    shapes = []
    for index, (surface, result, transform, extra) in enumerate(zip(surfaces, results, transforms, provenance)):
        check_cancel(cancel, "cancelled")
        report(0.9 + 0.1 * index / count, f"evaluating {index + 1}/{count}")
        shape = fitted_shape(surface, result, family, source_name=extra.get("source_name", surface.name))
        metrics = evaluate_shape(shape, surface, settings.evaluation_resolution).metrics
        shape.metrics.update(metrics)
        shape.provenance.update(extra)
        shapes.append(replace(shape, transform=transform))
    report(1.0, "done")
    return shapes


def derived_provenance(
    operation: str, source_name: str, inputs: list[NeuralShape], model: Nf2vecModel, **details: str
) -> dict[str, str]:
    """Provenance of a shape made by an nf2vec operation: what was done, to what, with which model.

    ``source_sha256`` is the hash of the input shapes' weights and the details, so the same request on
    the same inputs is recognisable.
    """
    digest = hashlib.sha256(operation.encode())
    for shape in inputs:
        for weight, bias in shape.weights:
            digest.update(weight.tobytes() + bias.tobytes())
    return operation_provenance(operation, source_name, inputs, digest, {"nf2vec_model": model.model_id}, details)


def operation_provenance(
    operation: str,
    source_name: str,
    inputs: list[NeuralShape],
    digest: hashlib._Hash,
    made_with: dict[str, str],
    details: dict[str, str],
) -> dict[str, str]:
    """The provenance fields of a shape an operation made (``made_with``: the model it used). ``digest``, fed
    the operation and the inputs' weights, takes the details too and becomes ``source_sha256``."""
    for key in sorted(details):
        digest.update(f"{key}={details[key]}".encode())
    return {
        "source_name": source_name,
        "source_sha256": digest.hexdigest(),
        "tool_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "operation": operation,
        "inputs": ",".join(shape.name for shape in inputs),
        **made_with,
        **details,
    }
