"""Meta-learning a model family (MetaSDF: Sitzmann et al., with Meta-SGD's per-parameter learning rates).

A family learned here holds initial weights theta and inner learning rates alpha (one per weight) such
that ``inner_steps`` plain gradient steps ``phi <- phi - alpha * grad L1(phi)`` on a new shape's signed
distance samples already fit it roughly; ordinary Adam fine-tuning then finishes the fit (see
:func:`backend.fitting.batched.train_shapes`).

Meta-training (Algorithm 1 of the paper): draw a batch of shapes, adapt a copy of theta to each with
the inner steps on fresh *context* points, measure the L1 loss of the adapted nets on separate *target*
points, and update theta and alpha with Adam on that loss, differentiating through the inner steps
(second order; ``first_order`` treats the inner gradients as constants, which keeps alpha learnable).

Everything is in the normalised frame; signed distances are negative inside.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from backend import __version__
from backend.errors import NeuralShapesError, check_cancel
from backend.fitting.batched import FitSettings, sample_shape
from backend.fitting.inner_loop import (
    Parameters,
    adapt,
    draw_samples,
    family_parameters,
    family_rates,
    l1_per_shape,
    weights_of,
)
from backend.meshes.loading import load_mesh_file
from backend.meshes.sampling import DEFAULT_UNIFORM_FRACTION
from backend.shapes.architecture import Architecture, ModelFamily, random_family
from backend.shapes.checkpoints import load_tensors, save_tensors
from backend.shapes.family_file import write_family


@dataclass(frozen=True)
class MetaSettings:
    """Meta-training settings; points are importance samples as fitting uses (beta 60 + 1/16 uniform)."""

    inner_steps: int = 5
    inner_batch: int = 2048  # context points per shape per inner step (the fitting step size)
    target_batch: int = 4096  # points per shape for the outer loss
    initial_inner_rate: float = 1e-2
    outer_learning_rate: float = 5e-4
    meta_batch: int = 8  # shapes per outer step
    outer_steps: int = 2000
    first_order: bool = False
    samples_per_shape: int = 32_768
    uniform_fraction: float = (
        DEFAULT_UNIFORM_FRACTION  # of the samples, uniform in the cube (the rest near the surface)
    )
    held_out_shapes: int = 16  # last shapes of the collection, never trained on: the validation figure
    eval_every: int = 100
    seed: int = 0


@dataclass
class MetaProgress:
    """What a progress callback receives: stage 'sampling' (step = shapes sampled) or 'training'."""

    stage: str
    step: int
    total: int
    train_loss: float = float("nan")
    held_out_loss: float = float("nan")


# --- training data -------------------------------------------------------------------------------


@dataclass
class CollectionSamples:
    """Importance samples of a collection: points (S, m, 3) and sdf (S, m) float32 tensors, normalised frames."""

    names: list[str]
    points: torch.Tensor
    sdf: torch.Tensor


def collection_samples(
    mesh_paths: list[Path],
    cache: Path,
    settings: MetaSettings,
    progress: Callable[[MetaProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> CollectionSamples:
    """Samples of every mesh, cached in an HDF5 file: a re-run samples only meshes not yet in the cache.

    A mesh that cannot be loaded is an error naming it (a training collection should be clean data).
    """
    report = progress or (lambda _: None)
    fit_settings = FitSettings(
        samples=settings.samples_per_shape,
        uniform_fraction=settings.uniform_fraction,
        seed=settings.seed,
        eval_points=16,
    )
    names = [path.name for path in mesh_paths]
    # Opened directly, not through backend.shapes.h5_io.parse_h5: the cache is this tool's own file, written
    # next to a collection on the command line of the user who trains; no service route or .blend reaches it.
    with h5py.File(cache, "a") as f:
        for key in ("samples_per_shape", "uniform_fraction"):
            # Caches written before the uniform fraction was a setting used the default.
            made_with = f.attrs.get(key, getattr(MetaSettings(), key) if len(f) else getattr(settings, key))
            if made_with != getattr(settings, key):
                raise NeuralShapesError(
                    f"{cache}: made with another {key} ({made_with}); delete it or pass the same setting"
                )
            f.attrs[key] = getattr(settings, key)
        for index, path in enumerate(mesh_paths):
            check_cancel(cancel, "meta-training cancelled")
            if path.name not in f:
                data = sample_shape(load_mesh_file(path), fit_settings, index)
                g = f.create_group(f".{path.name}")  # renamed when complete: an interrupted write is redone
                g.create_dataset("points", data=data.points.astype(np.float32))
                g.create_dataset("sdf", data=data.sdf.astype(np.float32))
                f.move(f".{path.name}", path.name)
                f.flush()
            report(MetaProgress("sampling", index + 1, len(mesh_paths)))
        points = torch.from_numpy(np.stack([f[name]["points"][()] for name in names]))
        sdf = torch.from_numpy(np.stack([f[name]["sdf"][()] for name in names]))
    return CollectionSamples(names, points, sdf)


# --- meta-training -------------------------------------------------------------------------------


def meta_train(
    samples: CollectionSamples,
    output: Path,
    settings: MetaSettings = MetaSettings(),
    architecture: Architecture = Architecture(),
    name: str = "meta",
    checkpoint: Path | None = None,
    progress: Callable[[MetaProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> ModelFamily:
    """Meta-train a family on ``samples`` and write it to ``output``.

    Starts from the seeded random family of ``architecture``. Every ``eval_every`` steps it reports the
    held-out loss (L1 after the inner steps on shapes never trained on) and writes ``checkpoint``
    (a ``.safetensors`` file of :mod:`backend.shapes.checkpoints`, never unpickled); an existing checkpoint with the same
    settings is resumed.
    """
    report = progress or (lambda _: None)
    count = len(samples.names)
    held_out = min(settings.held_out_shapes, count // 4)
    train_count = count - held_out
    if train_count < 1:
        raise NeuralShapesError("meta-training needs at least one training shape")
    start = random_family(architecture, settings.seed)
    theta = [p.requires_grad_() for p in family_parameters(start, 1)]
    alpha = [torch.full_like(p, settings.initial_inner_rate).requires_grad_() for p in theta]
    optimizer = torch.optim.Adam(theta + alpha, lr=settings.outer_learning_rate)
    generator = torch.Generator().manual_seed(settings.seed)
    step, seconds, history = 0, 0.0, []
    settings_text = json.dumps(asdict(settings), sort_keys=True)
    if checkpoint is not None and checkpoint.exists():
        step, seconds, history = _resume(checkpoint, settings_text, theta, alpha, optimizer, generator)
    held = _fixed_batches(samples, range(train_count, count), settings)

    while step < settings.outer_steps:
        check_cancel(cancel, "meta-training cancelled")
        started = time.perf_counter()
        shapes = torch.randint(0, train_count, (settings.meta_batch,), generator=generator)
        batches = _draw(samples, shapes, settings, generator)
        loss = _post_adaptation_loss(architecture, theta, alpha, batches, create_graph=not settings.first_order)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        seconds += time.perf_counter() - started
        if step % settings.eval_every == 0 or step == settings.outer_steps:
            held_loss = held_out_loss(architecture, theta, alpha, held) if held_out else float("nan")
            history.append((step, loss.item(), held_loss))
            report(MetaProgress("training", step, settings.outer_steps, loss.item(), held_loss))
            if checkpoint is not None:
                _save_checkpoint(checkpoint, settings_text, step, seconds, history, theta, alpha, optimizer, generator)
        else:
            report(MetaProgress("training", step, settings.outer_steps, loss.item()))

    family = ModelFamily(
        name=name,
        architecture=architecture,
        initial_weights=weights_of(theta),
        inner_learning_rates=weights_of(alpha),
        inner_steps=settings.inner_steps,
        inner_batch=settings.inner_batch,
        provenance={
            "method": "Meta-SGD" + (" (first order)" if settings.first_order else ""),
            "settings": settings_text,
            "training_shapes": str(train_count),
            "held_out_shapes": str(held_out),
            "train_seconds": f"{seconds:.1f}",
            "history": json.dumps(history),
            "tool_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    write_family(output, family)
    return family


@dataclass
class TaskBatches:
    """Points of s shapes for one outer step: k context batches (s, k, n, 3) / (s, k, n), targets (s, t, 3) / (s, t)."""

    context_points: torch.Tensor
    context_sdf: torch.Tensor
    target_points: torch.Tensor
    target_sdf: torch.Tensor


def held_out_loss(architecture: Architecture, theta: Parameters, alpha: Parameters, batches: TaskBatches) -> float:
    """Mean L1 on the target points after the inner steps on the context batches."""
    with torch.enable_grad():
        loss = _post_adaptation_loss(architecture, theta, alpha, batches, create_graph=False)
    return loss.item()


def family_held_out_loss(
    family: ModelFamily, samples: CollectionSamples, settings: MetaSettings, inner_rate: float | None = None
) -> float:
    """Post-adaptation L1 of ``family`` on every shape of ``samples`` (inner rates: the family's, or one constant)."""
    theta = [p.requires_grad_() for p in family_parameters(family, 1)]
    if inner_rate is None:
        alpha = family_rates(family)
    else:
        alpha = [torch.full_like(p, inner_rate) for p in theta]
    return held_out_loss(
        family.architecture, theta, alpha, _fixed_batches(samples, range(len(samples.names)), settings)
    )


def _post_adaptation_loss(
    architecture: Architecture, theta: Parameters, alpha: Parameters, batches: TaskBatches, create_graph: bool
) -> torch.Tensor:
    shapes = batches.target_points.shape[0]
    start = [p.expand(shapes, *p.shape[1:]) for p in theta]
    adapted = adapt(architecture, start, alpha, batches.context_points, batches.context_sdf, create_graph=create_graph)
    return l1_per_shape(architecture, adapted, batches.target_points, batches.target_sdf).mean()


def _draw(
    samples: CollectionSamples, shapes: torch.Tensor, settings: MetaSettings, generator: torch.Generator
) -> TaskBatches:
    """Context and target points drawn (with replacement) from each shape's samples."""
    s, k, n, t = len(shapes), settings.inner_steps, settings.inner_batch, settings.target_batch
    points, sdf = draw_samples(samples.points[shapes], samples.sdf[shapes], k * n + t, generator)
    return TaskBatches(
        points[:, : k * n].view(s, k, n, 3), sdf[:, : k * n].view(s, k, n), points[:, k * n :], sdf[:, k * n :]
    )


def _fixed_batches(samples: CollectionSamples, shapes: range, settings: MetaSettings) -> TaskBatches:
    """Held-out batches drawn with a fixed seed, so the figure is comparable across steps and runs."""
    return _draw(samples, torch.tensor(list(shapes), dtype=torch.long), settings, torch.Generator().manual_seed(12345))


def _save_checkpoint(
    path: Path, settings_text: str, step: int, seconds: float, history: list, theta, alpha, optimizer, generator
) -> None:
    save_tensors(
        path,
        {
            "settings": settings_text,
            "step": step,
            "seconds": seconds,
            "history": history,
            "theta": [p.detach() for p in theta],
            "alpha": [p.detach() for p in alpha],
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
        },
    )


def _resume(path: Path, settings_text: str, theta, alpha, optimizer, generator) -> tuple[int, float, list]:
    failure = "not a valid meta-training checkpoint"
    state = load_tensors(path, failure)
    if state.get("settings") != settings_text:
        raise NeuralShapesError(f"{path}: checkpoint made with other settings; delete it or pass the same settings")
    try:
        with torch.no_grad():
            for param, saved in zip(theta + alpha, state["theta"] + state["alpha"]):
                param.copy_(saved)
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        return int(state["step"]), float(state["seconds"]), [tuple(h) for h in state["history"]]
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise NeuralShapesError(f"{path}: {failure} ({type(error).__name__}: {error})".splitlines()[0]) from None
