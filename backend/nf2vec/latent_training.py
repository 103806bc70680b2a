"""Training a latent family (:mod:`backend.nf2vec.latent`) as an auto-decoder, DeepSDF-style.

Start: theta and the basis are the mean and the top-k principal directions of fitted nets' flat weights,
each basis row scaled by its direction's standard deviation, so the PCA coordinates of the fitted nets
(their starting latents) have unit variance; shapes without a fitted net start at z = 0. Then each step
draws ``shapes_per_step`` distinct shapes and ``points_per_shape`` of each one's signed distance samples
and minimises

    L1(f_{w(z_i)}(x), sdf) + prior_weight |z_i|^2 + weight_pull |w(z_i) - w_i|^2 (fitted shapes only)

with Adam on theta and the basis and a lazy (sparse) Adam on the latents at its own rate: a latent moves
only when its shape is drawn, as if each shape had its own optimiser. The probe behind this recipe is in
``../shared/research/nf2vec-latent.md`` (sections 2 and 4).

A checkpoint (``latent-checkpoint.safetensors``, tensors and optimiser states only, keyed by a run key
of the shapes and settings) is written into the model folder every ``checkpoint_every`` steps and
removed at the end, so an interrupted run resumes and ends exactly as an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from backend.datasets.procedural import Manifest
from backend.errors import NeuralShapesError, check_cancel
from backend.fitting.meta_learning import CollectionSamples, MetaProgress, MetaSettings, collection_samples
from backend.nf2vec.latent import LatentFamily, estimate_prior, flat_forward, flatten, save_latent
from backend.nf2vec.resumable import LossReports, checkpoint_key, resume_checkpoint
from backend.nf2vec.training import (
    Nf2vecProgress,
    ShapeSamples,
    TrainSettings,
    _draw,  # train-nf2vec's draw of a shape's mesh samples, shared
    shape_samples,
)
from backend.shapes.architecture import Architecture
from backend.shapes.checkpoints import save_tensors
from backend.shapes.shape_file import NeuralShape
from backend.torch_device import training_device

CHECKPOINT_NAME = "latent-checkpoint.safetensors"


@dataclass(frozen=True)
class LatentSettings:
    """How a latent family is trained (the design study's recipe, section 4 step 3)."""

    k: int = 128
    steps: int = 20_000
    shapes_per_step: int = 32
    points_per_shape: int = 4096
    # Adam on theta and the basis. Measured at k = 128 on the bundled 264 anchor nets: the study's 3e-4 (its basis
    # rows were unscaled) lifts the L1 of the PCA start from 0.040 to 0.23 within 40 steps; 1e-5 lowers it.
    subspace_learning_rate: float = 1e-5
    latent_learning_rate: float = 3e-3  # lazy Adam on the per-shape latents
    prior_weight: float = 1e-4  # x |z|^2 (summed over k): keeps latents near the unit Gaussian
    weight_pull: float = 0.0  # x |w(z_i) - w_i|^2 (summed over P) towards each fitted net; 0 = off
    samples_per_shape: int = 32_768  # cached samples per source mesh
    uniform_fraction: float = 0.5  # of the samples, uniform in the cube (as train-nf2vec: the inside must be learnt)
    checkpoint_every: int = 500
    report_every: int = 25
    seed: int = 0


@dataclass
class LatentProgress:
    """What a progress callback receives: stage 'sampling' (step = meshes sampled) or 'training' (loss = the
    mean L1 of the signed distances since the last report, without the prior and pull terms)."""

    stage: str
    step: int
    total: int
    loss: float = float("nan")


@dataclass
class LatentTrainingData:
    """The shapes an auto-decoder learns, one latent each.

    names (n,); samples: the source meshes' samples, ``mesh_of_shape`` (n,) indexing them; weights (n, P)
    float32 flat weights of each shape's fitted net (zero rows where ``fitted`` (n,) bool is false);
    labels (n,) int64 into class_names, or None without classes.
    """

    names: list[str]
    samples: ShapeSamples
    weights: torch.Tensor
    fitted: torch.Tensor
    labels: np.ndarray | None = None
    class_names: list[str] | None = None


class SamplingSettings(Protocol):
    """What drawing a shape's samples needs from a trainer's settings (LatentSettings, EncoderSettings)."""

    samples_per_shape: int
    uniform_fraction: float
    seed: int


def sampling_relay(
    progress: Callable[[LatentProgress], None] | None,
) -> Callable[[Nf2vecProgress | MetaProgress], None]:
    """Sampling progress (of train-nf2vec's or meta-train's samplers) reported as ``LatentProgress("sampling", ...)``."""
    report = progress or (lambda _: None)
    return lambda event: report(LatentProgress("sampling", event.step, event.total))


def sampled_shapes(
    shapes: list[NeuralShape],
    collection: Path,
    cache: Path,
    settings: SamplingSettings,
    progress: Callable[[LatentProgress], None] | None = None,
) -> ShapeSamples:
    """The shapes' signed-distance samples, found and cached as train-nf2vec does
    (:func:`backend.nf2vec.training.shape_samples`), drawn with ``settings``' sample count, uniform fraction and seed."""
    sampling = TrainSettings(
        samples_per_shape=settings.samples_per_shape, uniform_fraction=settings.uniform_fraction, seed=settings.seed
    )
    return shape_samples(shapes, collection, cache, sampling, sampling_relay(progress))


def latent_training_data(
    shapes: list[NeuralShape],
    collection: Path,
    cache: Path,
    settings: LatentSettings = LatentSettings(),
    unfitted: list[Path] | None = None,
    manifest: Manifest | None = None,
    progress: Callable[[LatentProgress], None] | None = None,
) -> LatentTrainingData:
    """The fitted ``shapes`` (of one family) and, without a net each, the meshes ``unfitted``, with their samples.

    Samples are cached in ``cache`` as train-nf2vec caches them (:func:`backend.nf2vec.training.shape_samples`:
    source meshes found in ``collection`` by provenance, checked by sha256). With ``manifest``, each shape
    gets the class of its source mesh there (one of them missing is a one-line error); unfitted meshes are
    named by their file stem.
    """
    relay = sampling_relay(progress)
    fitted_samples = sampled_shapes(shapes, collection, cache, settings, progress)
    meshes, mesh_of_shape = fitted_samples.meshes, fitted_samples.mesh_of_shape
    extra = list(unfitted or [])
    if extra:
        more = collection_samples(
            extra,
            cache,
            MetaSettings(
                samples_per_shape=settings.samples_per_shape,
                uniform_fraction=settings.uniform_fraction,
                seed=settings.seed,
            ),
            relay,
        )
        mesh_of_shape = torch.cat([mesh_of_shape, torch.arange(len(meshes.names), len(meshes.names) + len(extra))])
        meshes = CollectionSamples(
            meshes.names + more.names, torch.cat([meshes.points, more.points]), torch.cat([meshes.sdf, more.sdf])
        )
    count = len(shapes) + len(extra)
    weights = torch.zeros(count, shapes[0].architecture.parameter_count)
    weights[: len(shapes)] = torch.from_numpy(np.stack([flatten(shape.weights) for shape in shapes]))
    data = LatentTrainingData(
        [shape.name for shape in shapes] + [path.stem for path in extra],
        ShapeSamples(meshes, mesh_of_shape),
        weights,
        torch.arange(count) < len(shapes),
    )
    if manifest is not None:
        class_of = {item.file: item.class_name for item in manifest.items}
        sources = [shape.provenance.get("source_name", "") for shape in shapes] + [path.name for path in extra]
        missing = [(name, source) for name, source in zip(data.names, sources) if source not in class_of]
        if missing:
            raise NeuralShapesError(
                f"'{missing[0][0]}': its mesh '{missing[0][1]}' has no class in the collection manifest of {manifest.root}"
            )
        data.class_names = [name for name in manifest.classes if name in {class_of[source] for source in sources}]
        data.labels = np.array([data.class_names.index(class_of[source]) for source in sources], dtype=np.int64)
    return data


def check_latent_size(k: int, fitted: int) -> None:
    """Refuse a latent size the fitted nets cannot span: ``f`` nets span at most ``f - 1`` directions about their mean."""
    if not 1 <= k <= fitted - 1:
        raise NeuralShapesError(f"a {k}-dimensional latent family needs at least {k + 1} fitted nets, got {fitted}")


def principal_subspace(flat: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """theta (P,), basis (k, P) and coordinates (f, k) of f nets' flat weights (f, P), float32.

    theta is the mean; basis row j is principal direction j times its standard deviation, so the
    coordinates have unit variance and ``theta + coordinates @ basis`` is each net's projection on the
    top-k subspace. Needs 1 <= k <= f - 1 (:func:`check_latent_size`).
    """
    count = flat.shape[0]
    check_latent_size(k, count)
    mean = flat.double().mean(0)
    u, s, vt = torch.linalg.svd(
        flat.double() - mean, full_matrices=False
    )  # float64: the projection test is exact to 1e-6
    scale = math.sqrt(count - 1)
    basis = (s[:k, None] / scale) * vt[:k]
    return mean.float(), basis.float(), (u[:, :k] * scale).float()


def train_latent(
    data: LatentTrainingData,
    output: Path,
    family_id: str,
    architecture: Architecture,
    settings: LatentSettings = LatentSettings(),
    progress: Callable[[LatentProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> LatentFamily:
    """Train a latent family of ``family_id`` nets on ``data`` and write ``output/latent.safetensors``.

    Resumes ``output/latent-checkpoint.safetensors`` when its run key matches (the step count may grow
    between runs); a checkpoint of other shapes or settings is a one-line error. ``cancel`` stops at the
    next step with :class:`backend.errors.Cancelled` (the last checkpoint stays).
    """
    report = progress or (lambda _: None)
    count = len(data.names)
    if count < 2:
        raise NeuralShapesError("a latent family needs at least two training shapes")
    device = training_device()
    theta, basis, coordinates = principal_subspace(data.weights[data.fitted], settings.k)
    latents = torch.zeros(count, settings.k)
    latents[data.fitted] = coordinates
    theta, basis, latents = (tensor.to(device).requires_grad_() for tensor in (theta, basis, latents))
    fitted_weights, fitted_mask = data.weights.to(device), data.fitted.to(device)
    subspace_optimizer = torch.optim.Adam([theta, basis], lr=settings.subspace_learning_rate)
    latent_optimizer = torch.optim.SparseAdam([latents], lr=settings.latent_learning_rate)
    generator = torch.Generator().manual_seed(settings.seed)
    output.mkdir(parents=True, exist_ok=True)
    checkpoint = output / CHECKPOINT_NAME
    run_key = _run_key(data, family_id, settings)
    run = LossReports.of(settings, report, LatentProgress)
    optimizers = {"subspace_optimizer": subspace_optimizer, "latent_optimizer": latent_optimizer}
    _resume(checkpoint, run_key, run, [theta, basis, latents], optimizers, generator)
    batch_size = min(settings.shapes_per_step, count)
    while run.step < settings.steps:
        check_cancel(cancel, "latent training cancelled")
        batch = torch.randperm(count, generator=generator)[:batch_size]
        points, sdf = (tensor.to(device) for tensor in _draw(data.samples, batch, settings.points_per_shape, generator))
        batch = batch.to(device)
        z = F.embedding(batch, latents, sparse=True)  # a sparse gradient: only drawn latents move
        flat = theta + z @ basis
        data_loss = (flat_forward(architecture, flat, points) - sdf).abs().mean()
        loss = data_loss + settings.prior_weight * (z**2).sum(1).mean()
        if settings.weight_pull > 0:
            fitted = fitted_mask[batch].float()
            pull = ((flat - fitted_weights[batch]) ** 2).sum(1)
            loss = loss + settings.weight_pull * (pull * fitted).sum() / fitted.sum().clamp(min=1)
        subspace_optimizer.zero_grad(set_to_none=True)
        latent_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        subspace_optimizer.step()
        latent_optimizer.step()
        if run.step_done(data_loss.item()):
            state = {name: optimizer.state_dict() for name, optimizer in optimizers.items()}
            tensors = [theta.detach(), basis.detach(), latents.detach()]
            save_tensors(
                checkpoint, {**run.checkpoint(run_key), "tensors": tensors, **state, "generator": generator.get_state()}
            )
    trained = latents.detach().cpu().clone()
    latent = LatentFamily(
        family_id,
        architecture,
        theta.detach().cpu().clone(),
        basis.detach().cpu().clone(),
        estimate_prior(trained, data.labels, data.class_names),
        trained,
        list(data.names),
        {
            **run.record(),
            "shapes": count,
            "fitted_shapes": int(data.fitted.sum()),
            "settings": asdict(settings),
        },
        labels=None if data.labels is None else torch.from_numpy(data.labels.astype(np.int64)),
    )
    save_latent(output, latent)
    checkpoint.unlink(missing_ok=True)
    return latent


def _run_key(data: LatentTrainingData, family_id: str, settings: LatentSettings) -> str:
    """What a checkpoint must match to be resumed: shapes, their fitted weights, classes and settings (not the step count)."""
    digest = hashlib.sha256(data.weights.numpy().tobytes() + data.fitted.numpy().tobytes()).hexdigest()
    meshes = {"meshes": data.samples.meshes.names, "mesh_of_shape": data.samples.mesh_of_shape.tolist()}
    return checkpoint_key(settings, shapes=data.names, weights=digest, family=family_id, **meshes)


def _resume(
    path: Path,
    run_key: str,
    run: LossReports,
    tensors: list[torch.Tensor],
    optimizers: dict[str, torch.optim.Optimizer],
    generator: torch.Generator,
) -> None:
    """Load the checkpoint, if there is one, into the run's bookkeeping, the tensors, optimisers (by name) and
    generator."""

    def restore(state: dict) -> None:
        saved = state["tensors"]
        if len(saved) != len(tensors) or any(s.shape != t.shape for s, t in zip(saved, tensors)):
            raise ValueError("tensors of other shapes")
        with torch.no_grad():
            for tensor, value in zip(tensors, saved):
                tensor.copy_(value)
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(state[name])
        generator.set_state(state["generator"])
        run.resume(state)

    resume_checkpoint(path, run_key, "latent training", "shapes or settings", restore)
