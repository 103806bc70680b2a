"""The nf2vec operations as the CLI and the service call them, each on the decoder chosen per call.

``latent`` (the default whenever the model folder has the latent family and its encoder,
:meth:`backend.nf2vec.ops.tools.Nf2vecTools.decoder`): results are nets of the latent family
``w(z) = theta + z B`` (:mod:`backend.nf2vec.ops.latent_ops`), no decode-mesh-refit, so Interpolate and
Generate take milliseconds per shape. ``implicit``: nf2vec's embedding, decoded to a grid and fitted
(:mod:`backend.nf2vec.ops.interpolation`, ``generation``, ``completion``, ``classification``, ``embedding``).

Choices on the latent path, measured on the bundled model's held-out shapes (README, nf2vec):

- Interpolate: the *quadratic* residual fade on the encoder's z (20 held-out pairs x 8: the largest
  consecutive Chamfer at most twice the pair's mean on 100% of the pairs, against 95% for the linear
  fade, which is the plain blend of the two nets since ``w(z)`` is affine; medians 1.14 and 1.08).
- Similar: nearest neighbours among the encoder's z.
- Classify: class posterior of the encoder's z (:func:`backend.nf2vec.ops.latent_ops.class_probabilities`) about the
  encoder's own class means of z (its training nets'), when its file keeps them.
- Complete: the MAP + fuse completion of the visible surface (the partial mesh's, or the partial
  shape's own surface when no mesh is given), with the class prior of the class asked for, or else of
  the partial's ``COMPLETION_CLASSES`` likeliest classes as candidates (the MAP keeps the one that explains
  the visible surface best): a class prior halves the completion's Chamfer against the overall prior.

Points are in normalised frames (bounding radius 0.9); signed distances are negative inside.
"""

from __future__ import annotations

import threading

import numpy as np
import torch
import trimesh

from backend.errors import NeuralShapesError
from backend.meshes.extraction import extract_mesh
from backend.nf2vec import embedding
from backend.nf2vec.decoding import DecodeSettings, OperationProgress
from backend.nf2vec.embedding import Neighbour, nearest
from backend.nf2vec.latent_encoder import encode_latent
from backend.nf2vec.ops import classification, completion, generation, interpolation
from backend.nf2vec.ops.interpolation import Space
from backend.nf2vec.ops.latent_ops import (
    LatentCompletionSettings,
    class_probabilities,
    complete_latent,
    generate_latent,
    interpolate_latent,
    surface_points_and_normals,
)
from backend.nf2vec.ops.tools import Nf2vecTools
from backend.shapes.shape_file import NeuralShape

DEFAULT_TRUNCATION = 1.0  # generate: the spread scaled by this; 1 (the fitted spread) scored best (tools.z_sampler)
SURFACE_RESOLUTION = 96  # marching cubes grid of a partial shape's own surface when completing with no mesh
SURFACE_POINTS = 8192  # visible surface points drawn for the completion's MAP fit
COMPLETION_CLASSES = 3  # candidate classes of a completion with no class given


def interpolate(
    tools: Nf2vecTools,
    a: NeuralShape,
    b: NeuralShape,
    times: list[float],
    space: Space = "embedding",
    decoder: str | None = None,
    settings: DecodeSettings = DecodeSettings(),
    progress: OperationProgress | None = None,
    cancel: threading.Event | None = None,
) -> list[NeuralShape]:
    """Shapes at each t of ``times`` (0 = ``a``, 1 = ``b``), named A-B-tNNN; ``space="weights"`` is the
    instant blend of the nets on either decoder."""
    if tools.decoder(decoder) == "implicit" or space == "weights":
        return interpolation.interpolate(tools, a, b, times, space, settings, progress, cancel)
    if space != "embedding":
        raise NeuralShapesError(f"interpolation space must be 'embedding' or 'weights', got '{space}'")
    z = encode(tools, [a, b])
    shapes = interpolate_latent(tools.require_latent(), a, z[0], b, z[1], times, fade="quadratic")
    _done(progress)
    return shapes


def generation_classes(tools: Nf2vecTools, decoder: str | None = None) -> list[str]:
    """The classes ``generate`` can be asked for with this decoder (empty: unconditional)."""
    if tools.decoder(decoder) == "implicit":
        return generation.generation_classes(tools)
    return list(tools.require_latent().prior.class_names)


def generate(
    tools: Nf2vecTools,
    count: int,
    seed: int = 0,
    class_name: str | None = None,
    truncation: float | None = None,
    decoder: str | None = None,
    settings: DecodeSettings = DecodeSettings(),
    progress: OperationProgress | None = None,
    cancel: threading.Event | None = None,
) -> list[NeuralShape]:
    """``count`` new shapes (of ``class_name``, if given), reproducible for a seed, named generated-[CLASS-]SEED-I,
    in the normalised frame. ``truncation`` in [0, 1] (None: 1) scales the sampled
    spread: 0 gives the class's typical shape."""
    truncation = DEFAULT_TRUNCATION if truncation is None else truncation
    if tools.decoder(decoder) == "implicit":
        return generation.generate(tools, count, seed, class_name, settings, progress, cancel, truncation=truncation)
    shapes = generate_latent(tools.require_latent(), tools.z_sampler(), count, seed, class_name, truncation)
    _done(progress)
    return shapes


def complete(
    tools: Nf2vecTools,
    partial: NeuralShape,
    surface: trimesh.Trimesh | None = None,
    decoder: str | None = None,
    settings: DecodeSettings = DecodeSettings(),
    progress: OperationProgress | None = None,
    cancel: threading.Event | None = None,
    latent_settings: LatentCompletionSettings = LatentCompletionSettings(),
    class_name: str | None = None,
) -> NeuralShape:
    """The completed shape of ``partial`` (named NAME-completed, placed over it).

    ``surface``: the partial's mesh in ``partial``'s normalised frame, when it came from one (an open cut
    stays open there); otherwise the latent decoder completes the partial net's own surface. ``settings``
    serve the implicit decoder, ``latent_settings`` the latent one. ``class_name`` (latent decoder only)
    picks the class prior; None: the partial's likeliest classes compete.
    """
    if tools.decoder(decoder) == "implicit":
        if class_name is not None:
            raise NeuralShapesError("a completion class needs the latent decoder (the transfer network takes none)")
        return completion.complete(tools, partial, settings, progress, cancel)
    latent = tools.require_latent()
    if latent.prior.class_names and class_name is None:
        [probabilities] = class_probabilities(latent.prior, encode(tools, [partial]), _class_means(tools))
        candidates: str | list[str] | None = [
            latent.prior.class_names[i] for i in np.argsort(-probabilities)[:COMPLETION_CLASSES]
        ]
    else:
        candidates = class_name
    report = progress or (lambda fraction, message: None)
    if surface is None:
        report(0.0, f"meshing '{partial.name}'")
        surface = extract_mesh(partial.architecture, partial.weights, SURFACE_RESOLUTION)
    if len(surface.faces) == 0:
        raise NeuralShapesError(f"shape '{partial.name}' has no surface to complete")
    points, normals = surface_points_and_normals(surface, SURFACE_POINTS)
    report(0.1, f"completing '{partial.name}'")
    completed, _ = complete_latent(
        latent, tools.family, partial, points, normals, class_name=candidates, settings=latent_settings
    )
    _done(progress)
    return completed


def encode(tools: Nf2vecTools, shapes: list[NeuralShape], decoder: str | None = None) -> np.ndarray:
    """The shapes' codes (n, e) float32 for neighbours: the encoder's z (latent decoder) or nf2vec embeddings."""
    if tools.decoder(decoder) == "implicit":
        return embedding.embed(tools.model, shapes)
    latent = tools.require_latent()
    assert tools.latent_encoder is not None  # loaded together with the latent family
    return encode_latent(tools.latent_encoder, latent, shapes)


def similar(
    tools: Nf2vecTools, query: NeuralShape, library: list[NeuralShape], k: int = 5, decoder: str | None = None
) -> list[Neighbour]:
    """The ``k`` library shapes nearest to ``query`` by L2 distance between codes (:func:`encode`), nearest first."""
    codes = encode(tools, [query, *library], decoder)
    return nearest(codes[0], codes[1:], k)


def classify(tools: Nf2vecTools, shape: NeuralShape, decoder: str | None = None) -> list[tuple[str, float]]:
    """(class, probability) for every class, most likely first: the implicit decoder's classifier network,
    or the latent family's class means (module docstring)."""
    if tools.decoder(decoder) == "implicit":
        return classification.classify(tools, shape)
    prior = tools.require_latent().prior
    [probabilities] = class_probabilities(prior, encode(tools, [shape]), _class_means(tools))
    order = np.argsort(-probabilities, kind="stable")
    return [(prior.class_names[i], float(probabilities[i])) for i in order]


def _class_means(tools: Nf2vecTools) -> torch.Tensor | None:
    """The encoder's class means of z when its file has them (files of before they were kept have not)."""
    return None if tools.latent_encoder is None else tools.latent_encoder.class_means


def _done(progress: OperationProgress | None) -> None:
    if progress is not None:
        progress(1.0, "done")
