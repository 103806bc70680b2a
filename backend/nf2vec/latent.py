"""The latent family: a k-dimensional linear subspace ``w(z) = theta + z B`` of one model family's weights.

Every latent ``z`` (k,) decodes to the flat weights of a net of the base family's architecture, so a
decoded shape renders at the family net's speed with no meshing or refit. ``theta`` (P,) and the basis
``B`` (k, P) are learned as an auto-decoder (:mod:`backend.nf2vec.latent_training`); a Gaussian prior on z
(overall and per class) makes fitting z to partial data well posed (MAP, :func:`fit_latent`).

Flat weights: per layer, the weight (out, in) row-major, then the bias (out,), layers in order (P = 7,553
for the default 8x32 net). Points are in the normalised frame; signed distances are negative inside.

The file ``latent.safetensors`` (docs/format.md) sits in the nf2vec model folder of its base family.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.errors import NeuralShapesError
from backend.nf2vec.resumable import read_versioned, write_versioned
from backend.shapes.architecture import Architecture, Weights, unflatten
from backend.shapes.architecture import flatten as flatten  # re-exported: flat weights are read through here too
from backend.shapes.frame import CUBE_HALF_SIZE
from backend.shapes.network import batched_forward

FORMAT = "neural-shapes/nf2vec-latent"
VERSION = 1
LATENT_NAME = "latent.safetensors"
MIN_PRIOR_STD = 1e-3  # floor of prior standard deviations: a constant latent dimension must not divide by 0


@dataclass
class LatentPrior:
    """A diagonal Gaussian over z: overall, and per class when the training shapes had classes.

    mean, std (k,); class_mean, class_std (c, k) with class_names (c,) naming the rows (c = 0 without classes).
    """

    mean: torch.Tensor
    std: torch.Tensor
    class_names: list[str] = field(default_factory=list)
    class_mean: torch.Tensor | None = None
    class_std: torch.Tensor | None = None

    def of(self, labels: torch.Tensor | None, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std (count, k) for ``count`` shapes: per label (count,) int64 into class_names, or overall."""
        if labels is None:
            return self.mean.expand(count, -1), self.std.expand(count, -1)
        if self.class_mean is None or self.class_std is None:
            raise NeuralShapesError("this latent family has no class prior; fit without classes")
        return self.class_mean[labels], self.class_std[labels]


def estimate_prior(
    latents: torch.Tensor, labels: np.ndarray | None = None, class_names: list[str] | None = None
) -> LatentPrior:
    """The Gaussian prior of training latents (n, k); per class as well when labels (n,) index class_names.

    A class with fewer than two latents takes the overall std (one sample has no spread).
    """
    mean = latents.mean(0)
    std = latents.std(0).clamp(min=MIN_PRIOR_STD) if len(latents) > 1 else torch.ones(latents.shape[1])
    if labels is None or not class_names:
        return LatentPrior(mean, std)
    label_tensor = torch.as_tensor(labels, dtype=torch.long)
    class_mean, class_std = mean.repeat(len(class_names), 1), std.repeat(len(class_names), 1)
    for index in range(len(class_names)):
        members = latents[label_tensor == index]
        if len(members):
            class_mean[index] = members.mean(0)
        if len(members) > 1:
            class_std[index] = members.std(0).clamp(min=MIN_PRIOR_STD)
    return LatentPrior(mean, std, list(class_names), class_mean, class_std)


@dataclass
class LatentFamily:
    """``w(z) = theta + z basis`` over the nets of one model family (see the module docstring)."""

    family_id: str  # the base family: every decoded net is a net of it
    architecture: Architecture
    theta: torch.Tensor  # (P,) float32 flat weights at z = 0
    basis: torch.Tensor  # (k, P) float32
    prior: LatentPrior
    latents: torch.Tensor | None = None  # (n, k) the training shapes' latents, when kept
    names: list[str] = field(default_factory=list)  # (n,) the training shapes' names
    training: dict[str, Any] = field(default_factory=dict)  # steps, seconds, settings, final loss
    labels: torch.Tensor | None = None  # (n,) int64 the training shapes' rows in prior.class_names, when known

    @property
    def k(self) -> int:
        return self.basis.shape[0]

    def flat(self, z: torch.Tensor) -> torch.Tensor:
        """Flat weights (s, P) of latents z (s, k); differentiable in z, theta and basis."""
        return self.theta + z @ self.basis

    def field(self, z: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Signed distances (s, n) of the nets of latents z (s, k) at points (s, n, 3), in one batched pass."""
        return flat_forward(self.architecture, self.flat(z), points)

    def weights(self, z: np.ndarray | torch.Tensor) -> Weights:
        """The net of one latent z (k,) as the project's ``Weights``: per layer weight (out, in), bias (out,), float32."""
        with torch.no_grad():
            flat = self.flat(torch.as_tensor(z, dtype=torch.float32).reshape(1, self.k))[0]
        return unflatten(self.architecture, flat.numpy())


# --- flat weights ----------------------------------------------------------------------------------


def flat_forward(architecture: Architecture, flat: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Signed distances (s, n) of s nets given as flat weights (s, P) at points (s, n, 3); differentiable.

    Views into ``flat`` feed :func:`backend.shapes.network.batched_forward`, so gradients reach z through them.
    """
    sizes, weights, biases, start = architecture.layer_sizes, [], [], 0
    count = flat.shape[0]
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        weights.append(flat[:, start : start + fan_out * fan_in].reshape(count, fan_out, fan_in))
        start += fan_out * fan_in
        biases.append(flat[:, start : start + fan_out])
        start += fan_out
    return batched_forward(architecture, weights, biases, points)


# --- MAP fit of z ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatentFitSettings:
    """Fitting z to samples: Adam on z alone, ``steps`` steps of ``batch_points`` points per shape.

    The prior term is ``prior_weight`` x the mean over the k dimensions of ((z - mean) / std)^2, so the
    weight does not depend on k. 1e-3 suits dense samples of a whole shape; partial data wants ~1e-2.
    """

    steps: int = 300
    learning_rate: float = 3e-2
    batch_points: int = 2048
    prior_weight: float = 1e-3
    seed: int = 0


@dataclass
class LatentFit:
    """Fitted latents z (s, k) float32 and each shape's weighted mean L1 (s,) over all its samples at the end."""

    latents: np.ndarray
    data_loss: np.ndarray


def fit_latent(
    latent: LatentFamily,
    points: np.ndarray | torch.Tensor,
    sdf: np.ndarray | torch.Tensor | None = None,
    sample_weights: np.ndarray | torch.Tensor | None = None,
    labels: np.ndarray | None = None,
    initial: np.ndarray | None = None,
    settings: LatentFitSettings = LatentFitSettings(),
) -> LatentFit:
    """MAP fit of one latent per shape to its samples, all shapes in one batch.

    points (s, m, 3) normalised frame; sdf (s, m) signed distances (None: the points lie on the surface,
    distance 0); sample_weights (s, m) >= 0 (None: all 1), e.g. 0 for points a trimmed L1 drops; labels
    (s,) int64 into the prior's class names picks each shape's class prior (None: the overall prior);
    initial (s, k) starts the fit (None: the prior mean). The basis and theta stay fixed.
    """
    points_t = torch.as_tensor(points, dtype=torch.float32)
    count, available = points_t.shape[:2]
    sdf_t = torch.zeros(count, available) if sdf is None else torch.as_tensor(sdf, dtype=torch.float32)
    weight_t = (
        torch.ones(count, available) if sample_weights is None else torch.as_tensor(sample_weights, dtype=torch.float32)
    )
    if sdf_t.shape != (count, available) or weight_t.shape != (count, available) or points_t.shape[2:] != (3,):
        raise ValueError(
            f"points {tuple(points_t.shape)}, sdf {tuple(sdf_t.shape)} and weights {tuple(weight_t.shape)} do not match"
        )
    mean, std = latent.prior.of(None if labels is None else torch.as_tensor(labels, dtype=torch.long), count)
    z = (mean.clone() if initial is None else torch.as_tensor(initial, dtype=torch.float32).clone()).requires_grad_()
    optimizer = torch.optim.Adam([z], lr=settings.learning_rate)
    generator = torch.Generator().manual_seed(settings.seed)
    theta, basis = latent.theta.detach(), latent.basis.detach()  # fixed: only z is fitted
    for _ in range(settings.steps):
        if settings.batch_points >= available:  # few samples (a partial view): every step sees all of them
            batch_points, batch_sdf, batch_weight = points_t, sdf_t, weight_t
        else:
            index = torch.randint(available, (count, settings.batch_points), generator=generator)
            batch_points = torch.gather(points_t, 1, index[..., None].expand(-1, -1, 3))
            batch_sdf, batch_weight = torch.gather(sdf_t, 1, index), torch.gather(weight_t, 1, index)
        data = _weighted_l1(flat_forward(latent.architecture, theta + z @ basis, batch_points), batch_sdf, batch_weight)
        prior = (((z - mean) / std) ** 2).mean(1)
        # Summed over shapes: each shape's gradient is its own, whatever the batch holds.
        loss = (data + settings.prior_weight * prior).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        final = _weighted_l1(flat_forward(latent.architecture, theta + z @ basis, points_t), sdf_t, weight_t)
    return LatentFit(z.detach().numpy().astype(np.float32), final.numpy().astype(np.float32))


@dataclass(frozen=True)
class RefineSettings:
    """Refining z on a shape's own field: ``points`` samples of its net, ``near_fraction`` of them near its
    surface (the candidates of smallest |f| among ``candidates_per_near`` uniform ones each, moved by a
    Gaussian of ``near_noise``, normalised units), the rest uniform in the cube; then ``fit``."""

    points: int = 16_384
    # Near-surface points decide the surface: on 55 held-out shapes, from the field projection, 300 steps
    # reached median Chamfer 0.050 with half of the points near the surface, 0.048 with 0.75, 0.047 with 0.9.
    near_fraction: float = 0.9
    candidates_per_near: int = 8
    near_noise: float = 0.02
    fit: LatentFitSettings = LatentFitSettings(steps=300)
    seed: int = 0


def own_field_samples(
    architecture: Architecture, flat: torch.Tensor, settings: RefineSettings = RefineSettings()
) -> tuple[torch.Tensor, torch.Tensor]:
    """Points (s, m, 3) in the cube and the nets' own signed distances there (s, m), for nets (s, P) flat.

    Near-surface points come from the net itself (no mesh needed): uniform candidates closest to its zero
    set, jittered, so a thin part is sampled as densely as a thick one.
    """
    generator = torch.Generator().manual_seed(settings.seed)
    count = flat.shape[0]
    near = int(round(settings.points * settings.near_fraction))

    def uniform(m: int) -> torch.Tensor:
        return (torch.rand(count, m, 3, generator=generator) * 2 - 1) * CUBE_HALF_SIZE

    with torch.no_grad():
        candidates = uniform(near * settings.candidates_per_near)
        closest = flat_forward(architecture, flat, candidates).abs().topk(near, dim=1, largest=False).indices
        points = torch.gather(candidates, 1, closest[..., None].expand(-1, -1, 3))
        points = (points + settings.near_noise * torch.randn(points.shape, generator=generator)).clamp(
            -CUBE_HALF_SIZE, CUBE_HALF_SIZE
        )
        points = torch.cat([uniform(settings.points - near), points], dim=1)
        return points, flat_forward(architecture, flat, points)


def _weighted_l1(predicted: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per shape sum(w |f - sdf|) / sum(w): (s, n) each -> (s,)."""
    return ((predicted - target).abs() * weights).sum(1) / weights.sum(1).clamp(min=1e-12)


# --- the file --------------------------------------------------------------------------------------


def save_latent(folder: Path, latent: LatentFamily) -> Path:
    """Write ``folder/latent.safetensors`` atomically (folder created); returns its path."""
    prior = latent.prior
    fields = {
        "family_id": latent.family_id,
        "architecture": asdict(latent.architecture),
        "k": latent.k,
        "theta": latent.theta,
        "basis": latent.basis,
        "prior": {
            "mean": prior.mean,
            "std": prior.std,
            "class_names": list(prior.class_names),
            "class_mean": prior.class_mean,
            "class_std": prior.class_std,
        },
        "latents": latent.latents,
        "names": list(latent.names),
        "labels": latent.labels,
        "training": latent.training,
    }
    return write_versioned(folder / LATENT_NAME, FORMAT, VERSION, fields)


def load_latent(folder: Path, family_id: str | None = None) -> LatentFamily:
    """Read ``folder/latent.safetensors``; with ``family_id``, refuse a latent family of another base family.

    A missing, corrupt or foreign file, or tensors that do not fit the stated architecture and k, is a
    one-line :class:`NeuralShapesError` naming the file.
    """
    path = Path(folder) / LATENT_NAME
    data = read_versioned(path, "latent family", FORMAT, VERSION)
    if family_id is not None and data.get("family_id") != family_id:
        raise NeuralShapesError(f"{path}: a latent family of family {data.get('family_id')}, not of {family_id}")
    try:
        architecture = Architecture(**data["architecture"])
        k, params = int(data["k"]), architecture.parameter_count
        prior_data = dict(data["prior"])
        class_names = [str(name) for name in prior_data["class_names"]]
        latents = data["latents"]
        expected = {
            "theta": (data["theta"], (params,)),
            "basis": (data["basis"], (k, params)),
            "prior mean": (prior_data["mean"], (k,)),
            "prior std": (prior_data["std"], (k,)),
        }
        if class_names:
            expected |= {
                "class mean": (prior_data["class_mean"], (len(class_names), k)),
                "class std": (prior_data["class_std"], (len(class_names), k)),
            }
        if latents is not None:
            expected["latents"] = (latents, (len(data["names"]), k))
        for name, (tensor, shape) in expected.items():
            if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape or not torch.isfinite(tensor).all():
                raise ValueError(f"{name} is not a finite tensor of shape {shape}")
        labels = data.get("labels")  # absent from files written before labels were kept
        if labels is not None and (
            latents is None
            or tuple(labels.shape) != (len(latents),)
            or labels.dtype != torch.int64
            or len(labels)
            and not 0 <= int(labels.min()) <= int(labels.max()) < len(class_names)
        ):
            raise ValueError("labels are not one class row per training latent")
        prior = LatentPrior(
            prior_data["mean"].float(),
            prior_data["std"].float(),
            class_names,
            prior_data["class_mean"].float() if class_names else None,
            prior_data["class_std"].float() if class_names else None,
        )
        if (prior.std <= 0).any() or (prior.class_std is not None and (prior.class_std <= 0).any()):
            raise ValueError("prior standard deviations must be positive")
        return LatentFamily(
            str(data["family_id"]),
            architecture,
            data["theta"].float(),
            data["basis"].float(),
            prior,
            None if latents is None else latents.float(),
            [str(name) for name in data["names"]],
            dict(data["training"]),
            labels,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise NeuralShapesError(
            f"{path}: malformed latent family ({type(error).__name__}: {error})".splitlines()[0]
        ) from None
