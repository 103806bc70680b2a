"""Interpolate, Generate and Complete on the latent family ``w(z) = theta + z B``, with no decode-mesh-refit.

Every result is an ordinary :class:`NeuralShape` of the latent family's base family, so it renders, meshes
and stores like any fitted shape:

- :func:`interpolate_latent`: lerp in z, plus each end's residual ``r = w - w(z)`` (what the subspace
  misses of the end's own net) faded in, so t = 0 and t = 1 give the ends' weights exactly;
- :func:`generate_latent`: z drawn by a class-conditional sampler (the Gaussian prior with truncation
  built in, a GAN on z later), decodes with no surface rejected and redrawn;
- :func:`complete_latent`: MAP fit of z and a similarity (log scale, offset, yaw about Z) to the visible
  surface from several yaw starts, then a *fuse* fit, from the partial's own net, to the observed samples
  plus the decoded prior away from them (the partial's field where the MAP is unsure, and none of the
  prior's pieces that nothing joins to the partial); the partial comes back unchanged when the MAP
  explains the visible side badly.

Points are in normalised frames (bounding sphere radius 0.9); signed distances are negative inside.
Shapes with no reference surface carry NaN quality metrics ("not measured"), as weight-space in-betweens do.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch
import trimesh
from scipy import ndimage
from scipy.spatial import cKDTree

from backend.errors import NeuralShapesError
from backend.fitting.batched import FitSettings, TrainingData, train_shapes
from backend.meshes.extraction import extract_mesh
from backend.meshes.loading import bounding_similarity
from backend.nf2vec.decoding import operation_provenance
from backend.nf2vec.latent import LatentFamily, LatentPrior, flat_forward, flatten, unflatten
from backend.nf2vec.ops.interpolation import interpolated_frame
from backend.shapes.architecture import Architecture, ModelFamily, reframed
from backend.shapes.frame import BOUNDING_RADIUS, CUBE_HALF_SIZE, EXTRACTION_RADIUS, Similarity
from backend.shapes.network import evaluate_sdf
from backend.shapes.shape_file import NeuralShape

Fade = Literal["linear", "quadratic"]
# Draws ``count`` latents (count, k) float32 of a class (None: the sampler's choice) with a truncation in
# [0, 1] (0: the class's typical latent, 1: the full spread), reproducibly from the generator's state.
ZSampler = Callable[[int, torch.Generator, str | None, float], np.ndarray]

NOT_MEASURED = {"surface_error": float("nan"), "chamfer": float("nan"), "fscore": float("nan")}
VALIDITY_RESOLUTION = 32  # grid of the non-empty check: both signs must occur inside the bounding sphere
MAX_DRAWS = 20  # rounds of redrawing rejected latents before generation gives up
NORMALISE_RESOLUTION = 64  # grid of the surface whose bounding sphere a generated shape is normalised to
CLIP_TOLERANCE = 0.01  # how far past the old clipping sphere a normalised shape's may reach (normalised units)


# --- interpolation ---------------------------------------------------------------------------------


def interpolate_latent(
    latent: LatentFamily,
    a: NeuralShape,
    z_a: np.ndarray,
    b: NeuralShape,
    z_b: np.ndarray,
    times: list[float],
    fade: Fade = "linear",
) -> list[NeuralShape]:
    """Shapes at each t of ``times`` between ``a`` (t = 0) and ``b`` (t = 1), named A-B-tNNN.

    z_a, z_b (k,): the ends' latents (encoder output or a z fit). Weights at t are
    ``w((1 - t) z_a + t z_b) + c_a(t) r_a + c_b(t) r_b`` with the ends' residuals ``r = w - w(z)`` faded
    ``linear``: c_a = 1 - t, c_b = t (with a linear decoder, exactly weight-space interpolation), or
    ``quadratic``: c_a = (1 - t)^2, c_b = t^2 (monotone fades; mid-way only a quarter of each residual
    remains, so in-betweens lie nearer the learned subspace). t = 0 and t = 1 return the ends' weights
    bit for bit (the sum above equals them only up to rounding). Frames as
    :func:`backend.nf2vec.ops.interpolation.interpolated_frame`; quality metrics NaN.
    """
    if fade not in ("linear", "quadratic"):
        raise NeuralShapesError(f"the residual fade must be 'linear' or 'quadratic', got '{fade}'")
    if not times or not all(np.isfinite(times)):
        raise NeuralShapesError("interpolation needs at least one finite t")
    _check_family(latent, [a, b])
    ends = np.stack([flatten(a.weights), flatten(b.weights)])
    z_ends = torch.as_tensor(np.stack([z_a, z_b]), dtype=torch.float32).reshape(2, latent.k)
    with torch.no_grad():
        residuals = ends - latent.flat(z_ends).numpy()
    identity = latent_id(latent)
    shapes = []
    for t in times:
        name = f"{a.name}-{b.name}-t{round(t * 1000):03d}"
        if t == 0.0 or t == 1.0:
            flat = ends[int(t)].copy()
        else:
            with torch.no_grad():
                flat = latent.flat(((1.0 - t) * z_ends[0] + t * z_ends[1])[None])[0].numpy()
            fades = (1.0 - t, t) if fade == "linear" else ((1.0 - t) ** 2, t**2)
            flat = (flat + fades[0] * residuals[0] + fades[1] * residuals[1]).astype(np.float32)
        provenance = latent_provenance("interpolate-latent", name, [a, b], identity, t=f"{t:g}", fade=fade)
        shapes.append(_shape(latent, name, flat, interpolated_frame(a.transform, b.transform, t), provenance))
    return shapes


# --- generation ------------------------------------------------------------------------------------


def prior_sampler(prior: LatentPrior) -> ZSampler:
    """The built-in :data:`ZSampler`: z = mean + truncation * std * noise from the class's Gaussian prior.

    Truncation scales the noise (as StyleGAN's psi), so 0 gives the class mean and 1 the fitted spread.
    With no class asked, each latent's class is drawn uniformly when the prior has classes (a blob over
    all classes would blend them), else the overall prior is used.
    """

    def sample(count: int, generator: torch.Generator, class_name: str | None, truncation: float) -> np.ndarray:
        labels = _class_labels(prior, class_name, count)
        if labels is None and prior.class_names:
            labels = torch.randint(len(prior.class_names), (count,), generator=generator)
        mean, std = prior.of(labels, count)
        noise = torch.randn(count, mean.shape[1], generator=generator)
        return (mean + truncation * std * noise).numpy().astype(np.float32)

    return sample


def blend_sampler(latent: LatentFamily, low: float = 0.25) -> ZSampler:
    """A :data:`ZSampler` that blends two random training latents of the class, spread-preserving:
    z = m + truncation * ((1 - l) z_i + l z_j - m) / sqrt((1 - l)^2 + l^2), l uniform in [``low``, 1 - ``low``],
    m the class's mean latent.

    Every training latent decodes to a shape and an in-between of two of one class is one too (the
    interpolation table), whereas a draw from the diagonal Gaussian mixes dimensions that never go
    together and decodes to fragments (chairs and tables especially); ``low`` keeps a sample away from
    either training shape. A plain blend has only (1 - l)^2 + l^2 (half, mid-way) of the class's variance
    about m, so blends crowd round the typical shape and are told apart from real shapes by that alone; the
    division restores the spread (held-out 1-NNA 81% -> 76%, README). Needs the training latents and
    labels (train-latent keeps them); with no class asked, each latent's class is drawn uniformly.
    """
    prior = latent.prior
    if latent.latents is None or latent.labels is None or not prior.class_names:
        raise NeuralShapesError("blending needs the latent family's training latents and their classes")
    members = [torch.nonzero(latent.labels == index).flatten() for index in range(len(prior.class_names))]

    def sample(count: int, generator: torch.Generator, class_name: str | None, truncation: float) -> np.ndarray:
        labels = _class_labels(prior, class_name, count)
        if labels is None:
            labels = torch.randint(len(prior.class_names), (count,), generator=generator)
        latents = []
        for label in labels.tolist():
            count_of_class = len(members[label])
            if count_of_class == 0:
                raise NeuralShapesError(f"class '{prior.class_names[label]}' has no training latents to blend")
            first = int(torch.randint(count_of_class, (), generator=generator))
            second = (
                first + 1 + int(torch.randint(max(count_of_class - 1, 1), (), generator=generator))
            ) % count_of_class
            i, j = members[label][first], members[label][second]  # two different members when there are two
            weight = low + (1 - 2 * low) * torch.rand((), generator=generator)
            mean = prior.class_mean[label] if prior.class_mean is not None else prior.mean
            blend = (1 - weight) * latent.latents[i] + weight * latent.latents[j] - mean
            latents.append(mean + truncation * blend / torch.sqrt((1 - weight) ** 2 + weight**2))
        return torch.stack(latents).numpy().astype(np.float32)

    return sample


def generate_latent(
    latent: LatentFamily,
    sampler: ZSampler,
    count: int,
    seed: int = 0,
    class_name: str | None = None,
    truncation: float = 0.8,
    frame: Similarity = Similarity(scale=1.0, centre=np.zeros(3)),
) -> list[NeuralShape]:
    """``count`` new shapes decoded from sampled latents, reproducible for a seed, named generated-[CLASS-]SEED-I.

    A latent whose net has no surface (no sign change on a 32^3 grid inside the bounding sphere) is
    redrawn, up to 20 rounds. Shapes live in the normalised frame unless ``frame`` places them; quality
    metrics NaN; provenance records seed, class, truncation and each shape's draw round.
    """
    if count < 1:
        raise NeuralShapesError(f"the number of shapes must be at least 1, got {count}")
    if not 0.0 <= truncation <= 1.0:
        raise NeuralShapesError(f"truncation must be in [0, 1], got {truncation}")
    generator = torch.Generator().manual_seed(seed)
    grid = torch.from_numpy(_ball_grid(VALIDITY_RESOLUTION))
    kept: list[tuple[np.ndarray, int]] = []
    for draw in range(MAX_DRAWS):
        z = torch.as_tensor(sampler(count - len(kept), generator, class_name, truncation), dtype=torch.float32)
        with torch.no_grad():
            values = latent.field(z, grid.expand(len(z), -1, -1))
        valid = (values.min(1).values < 0) & (values.max(1).values > 0)
        kept += [(row, draw) for row in z[valid].numpy()]
        if len(kept) == count:
            break
    else:
        raise NeuralShapesError(
            f"{count - len(kept)} of {count} sampled latents decoded to no surface in {MAX_DRAWS} draws"
        )
    label = f"{class_name}-" if class_name else ""
    identity = latent_id(latent)
    shapes = []
    for index, (z_row, draw) in enumerate(kept):
        name = f"generated-{label}{seed}-{index}"
        provenance = latent_provenance(
            "generate-latent",
            name,
            [],
            identity,
            seed=str(seed),
            index=str(index),
            draw=str(draw),
            truncation=f"{truncation:g}",
            **{"class": class_name or ""},
        )
        with torch.no_grad():
            flat = latent.flat(torch.from_numpy(z_row)[None])[0].numpy()
        shapes.append(_shape(latent, name, _normalised(latent.architecture, flat), frame, provenance))
    return shapes


def _normalised(architecture: Architecture, flat: np.ndarray) -> np.ndarray:
    """Flat weights (P,) of the same shape moved and scaled towards the normalised frame every fitted shape
    has (its surface's bounding sphere of radius 0.9 at the origin).

    A blend of two latents decodes to a shape smaller than either and off centre (measured on the bundled
    model: median bounding radius 0.84 for chairs, lamps and blobs, centres 0.04-0.12 off the origin).
    Extraction clips every field to the sphere of radius ``EXTRACTION_RADIUS``, and a net's field outside
    it is untrained and may hold stray surface, so the move goes only as far towards the surface's centre as
    keeps the new clipping sphere inside the old one.
    """
    vertices = extract_mesh(architecture, unflatten(architecture, flat), NORMALISE_RESOLUTION).vertices
    if len(vertices) == 0:
        return flat
    centre = bounding_similarity(vertices, "generated shape").centre
    for share in np.linspace(1.0, 0.0, 6):
        new_centre = share * centre
        scale = BOUNDING_RADIUS / np.linalg.norm(vertices - new_centre, axis=1).max()
        if np.linalg.norm(new_centre) + EXTRACTION_RADIUS / scale <= EXTRACTION_RADIUS + CLIP_TOLERANCE:
            break
    return flatten(reframed(unflatten(architecture, flat), new_centre, scale))


def _ball_grid(resolution: int) -> np.ndarray:
    """Cell centres (n, 3) float32 of a resolution^3 grid over the normalised cube that lie in the bounding sphere."""
    axis = (np.arange(resolution) + 0.5) / resolution * 2 * CUBE_HALF_SIZE - CUBE_HALF_SIZE
    points = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    return points[np.linalg.norm(points, axis=1) <= BOUNDING_RADIUS].astype(np.float32)


# --- completion ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatentCompletionSettings:
    """Completion by MAP fit + fuse fit (the design study's recipe, section 4 step 7). Distances in the
    partial's normalised units unless said otherwise."""

    yaw_starts: int = 8  # evenly spaced yaw angles about Z per candidate class, fitted together as one batch
    steps: int = 300  # Adam steps of the MAP fit
    # After this many steps only the best ``kept_starts`` starts go on: the yaw (and class) that will win is
    # clear by then, and the rest of the fit costs a quarter as much.
    prune_after: int = 100
    kept_starts: int = 2
    # Slow pose, fast z: measured on a toy half sphere, a pose rate of 1e-2 (or z at 3e-2) lets scale and offset
    # run off to make up for a z still far away, and the fit settles there (trimmed L1 0.0115 vs 0.0054).
    latent_learning_rate: float = 5e-2
    pose_learning_rate: float = 3e-3  # log scale, offset and yaw
    context_points: int = 2048  # of the MAP fit
    fuse_points: int = 16_384  # observed samples of the fuse fit (drawn like the MAP's context)
    context_offset: float = 0.02  # context x = p + eps n, eps uniform in [-offset, offset], target sdf eps
    kept_fraction: float = 0.8  # trimmed L1: the best-fitting 80% of context points count
    prior_weight: float = 1e-2  # x mean over k of ((z - mean) / std)^2
    fallback_residual: float = 0.02  # the MAP's trimmed L1 above this: the partial comes back unchanged
    # ... and so it does when the completion follows the visible surface (mean |f| on it) worse than
    # visible_tolerance x the partial's own net does, plus visible_slack (normalised units)
    visible_tolerance: float = 1.1
    visible_slack: float = 0.002
    prior_margin: float = 0.1  # decoded-prior samples nearer the observed ones are dropped (completed frame)
    # Where the prior is not trusted, the fuse fit takes the partial's own field instead, so a wrong guess costs
    # no more than the input. Trusted: every MAP start that explains the visible side about as well as the best
    # (trimmed L1 within ``ensemble_ratio`` x the best's) puts the point on the same side of the surface.
    # None: the best start's prior everywhere.
    ensemble_ratio: float | None = 1.5
    # Grid over the cube on which the prior's pieces with nothing joining them to the partial are found and
    # left out (:func:`_detached_parts`); 0: kept.
    detached_resolution: int = 64
    prior_points: int = 16_384  # decoded-prior samples drawn before the margin (half uniform, half near its surface)
    # The fuse fit: a fixed number of steps. Median Chamfer on 11 held-out cuts (one per class, class prior), from
    # the family's start: 1,000 steps, 16,384 observed and prior samples, margin 0.1: 0.041; 600 steps, margin
    # 0.05: 0.045; the fitted partial 0.063. (300 steps with 2,048 / 8,192 samples lost to the fitted partial on
    # 8 of 11 cuts with the preview model.)
    fuse: FitSettings = field(
        default_factory=lambda: FitSettings(max_steps=1000, eval_every=1000, target_surface_error=0.0)
    )
    # The fuse fit starts from the partial's own net (moved to the completed frame), so the seen side keeps the
    # detail the partial's fit found (44 cuts, guarded: closer than the input 70% -> 84%, median ratio 0.87 ->
    # 0.71, completed F-score 0.55 -> 0.69); False: from the family's start.
    fuse_from_partial: bool = True
    seed: int = 0


@dataclass
class CompletionReport:
    """What the MAP found: the trimmed L1 of each start that ran to the end (kept starts,), the best's yaw (radians about Z), scale,
    offset (3,) with ``x_completed = scale R(yaw) x_partial + offset``, and whether it fell back; seconds spent."""

    data_loss: float
    start_losses: np.ndarray
    yaw: float
    scale: float
    offset: np.ndarray
    fell_back: bool
    seconds: float


def surface_points_and_normals(mesh: trimesh.Trimesh, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points (count, 3) float32 uniform over a (possibly open) mesh's area and its outward face normals (count, 3)."""
    points, faces = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(points, np.float32), np.asarray(mesh.face_normals[faces], np.float32)


def complete_latent(
    latent: LatentFamily,
    family: ModelFamily,
    partial: NeuralShape,
    points: np.ndarray,
    normals: np.ndarray | None = None,
    sdf: np.ndarray | None = None,
    class_name: str | list[str] | None = None,
    settings: LatentCompletionSettings = LatentCompletionSettings(),
) -> tuple[NeuralShape, CompletionReport]:
    """The completed shape of ``partial`` (named NAME-completed, placed over it) and a report of the MAP fit.

    The observation, in the partial's normalised frame: surface points (n, 3) with outward ``normals``
    (n, 3) (context x = p + eps n), or samples ``points`` with their signed distances ``sdf`` (n,), or bare
    surface points (distance 0). ``class_name`` picks the class prior, a list of classes makes each a
    candidate (the MAP keeps the class that explains the visible surface best), None: the overall prior. ``family``
    is the latent family's base family (the fuse fit starts from its initial weights).

    The completed shape's normalised frame is the partial's scaled by s and shifted, with the latent's
    canonical frame at yaw -yaw (a similarity has no rotation). Metrics: the fuse fit's figures and, with
    surface points, surface_error = mean |f| on them; Chamfer and F-score NaN (no whole to compare with).
    """
    started = time.perf_counter()
    _check_family(latent, [partial])
    if family.family_id != latent.family_id:
        raise NeuralShapesError(f"the fuse fit needs family {latent.family_id}, got {family.family_id}")
    context, targets, surface = _context(points, normals, sdf, settings)
    candidates = [class_name] if isinstance(class_name, str) else class_name
    labels = (
        None
        if candidates is None
        else torch.cat([_class_labels(latent.prior, name, settings.yaw_starts) for name in candidates])
    )
    z, log_scale, offset, yaw, losses, start_labels = _map_fit(latent, context, targets, labels, settings)
    best = int(np.argmin(losses))
    scale, rotation = math.exp(log_scale[best]), _yaw_matrix(torch.tensor([yaw[best]]))[0].numpy().astype(np.float64)
    name = f"{partial.name}-completed"
    chosen = "" if start_labels is None else latent.prior.class_names[int(start_labels[best])]
    details = {"class": chosen, "yaw": f"{yaw[best]:.4f}", "scale": f"{scale:.4f}", "data_loss": f"{losses[best]:.5f}"}
    fell_back = not losses[best] <= settings.fallback_residual  # NaN falls back too
    report = CompletionReport(
        float(losses[best]), losses, float(yaw[best]), scale, offset[best].astype(np.float64), fell_back, 0.0
    )

    def fall_back() -> tuple[NeuralShape, CompletionReport]:
        report.fell_back, report.seconds = True, time.perf_counter() - started
        provenance = latent_provenance(
            "complete-latent", name, [partial], latent_id(latent), fell_back="true", **details
        )
        return replace(partial, name=name, provenance=provenance), report

    if fell_back:
        return fall_back()
    # x_out = R^T x_canonical = s x_partial + R^T offset: the canonical frame turned back by the yaw, so
    # the decoded whole stays inside the bounding sphere.
    shift = rotation.T @ offset[best].astype(np.float64)
    fuse_context, fuse_targets, _ = _context(
        points, normals, sdf, replace(settings, context_points=settings.fuse_points)
    )
    # The starts that vote on trust (none besides the best without a guard: their fields would go unused).
    ratio = settings.ensemble_ratio
    members = [best] + [i for i in range(len(losses)) if i != best and ratio and losses[i] <= ratio * losses[best]]
    poses = [
        _Pose(latent.flat(torch.from_numpy(z[i])[None]).detach(), log_scale[i], offset[i], yaw[i]) for i in members
    ]
    details["agreeing_starts"] = str(len(members))
    data, fuse_metrics = _fuse_samples(
        latent, partial, poses, scale, shift, fuse_context, fuse_targets, surface, settings
    )
    start = [reframed(partial.weights, -shift / scale, scale)] if settings.fuse_from_partial else None
    [result] = train_shapes(family, [data], replace(settings.fuse, seed=settings.seed), start=start)
    metrics = {
        **NOT_MEASURED,
        "final_loss": result.final_loss,
        "fit_seconds": time.perf_counter() - started,
        "steps": float(result.steps),
    }
    if fuse_metrics is not None:
        metrics["surface_error"] = float(np.abs(evaluate_sdf(latent.architecture, result.weights, fuse_metrics)).mean())
        # The seen side must stay the partial's: a fuse that follows the visible surface worse than the partial's
        # own net (distances in the completed frame are s times the partial's) means the prior pulled it away.
        seen = float(np.abs(evaluate_sdf(partial.architecture, partial.weights, surface)).mean())
        details["visible_error"], details["partial_visible_error"] = (
            f"{metrics['surface_error'] / scale:.5f}",
            f"{seen:.5f}",
        )
        if not metrics["surface_error"] / scale <= settings.visible_tolerance * seen + settings.visible_slack:
            return fall_back()
    # x_out = s p_scale (x_source - p_centre) + shift = (s p_scale) (x_source - (p_centre - shift / (s p_scale))).
    frame_scale = scale * partial.transform.scale
    frame = Similarity(scale=frame_scale, centre=partial.transform.centre - shift / frame_scale)
    provenance = latent_provenance("complete-latent", name, [partial], latent_id(latent), fell_back="false", **details)
    report.seconds = time.perf_counter() - started
    return NeuralShape(name, latent.architecture, latent.family_id, result.weights, frame, metrics, provenance), report


def _context(
    points: np.ndarray, normals: np.ndarray | None, sdf: np.ndarray | None, settings: LatentCompletionSettings
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray | None]:
    """Context points (m, 3) and target distances (m,) in the partial's frame, and the surface points (n, 3) when known."""
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0 or not np.isfinite(points).all():
        raise NeuralShapesError(f"completion needs finite visible points (n, 3), got shape {points.shape}")
    if normals is not None and sdf is not None:
        raise NeuralShapesError("give the visible surface's normals or signed distance samples, not both")
    rng = np.random.default_rng(settings.seed)
    if sdf is not None:
        sdf = np.asarray(sdf, dtype=np.float32)
        if sdf.shape != (len(points),):
            raise NeuralShapesError(f"{len(points)} points need {len(points)} signed distances, got shape {sdf.shape}")
    pick = rng.choice(len(points), settings.context_points, replace=len(points) < settings.context_points)
    if sdf is not None:
        return torch.from_numpy(points[pick]), torch.from_numpy(sdf[pick]), None
    if normals is None:
        return torch.from_numpy(points[pick]), torch.zeros(len(pick)), points
    normals = np.asarray(normals, dtype=np.float32)
    if normals.shape != points.shape:
        raise NeuralShapesError(f"{len(points)} points need {len(points)} normals (n, 3), got shape {normals.shape}")
    normals = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    eps = rng.uniform(-settings.context_offset, settings.context_offset, len(pick)).astype(np.float32)
    return torch.from_numpy(points[pick] + eps[:, None] * normals[pick]), torch.from_numpy(eps), points


def _yaw_matrix(yaw: torch.Tensor) -> torch.Tensor:
    """Rotations (s, 3, 3) about Z by yaw (s,) radians; differentiable."""
    cos, sin, zero, one = torch.cos(yaw), torch.sin(yaw), torch.zeros_like(yaw), torch.ones_like(yaw)
    return torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], 1).reshape(-1, 3, 3)


def _map_fit(
    latent: LatentFamily,
    context: torch.Tensor,
    targets: torch.Tensor,
    labels: torch.Tensor | None,
    settings: LatentCompletionSettings,
) -> tuple[np.ndarray, ...]:
    """MAP of (z, log s, offset, yaw) from each start (``yaw_starts`` yaws per class label in ``labels``
    (c * yaw_starts,), or of the overall prior), all starts one batch; after ``prune_after`` steps only the
    ``kept_starts`` best go on.

    The partial's field is ``f_p(x) = f_z(s R x + offset) / s``. Returns, for the starts that went on to the
    end: z (starts, k), log s (starts,), offset (starts, 3), yaw (starts,), each one's final trimmed L1
    (starts,) float32, and their class labels (starts,) int64 (None without classes).
    """
    starts = settings.yaw_starts if labels is None else len(labels)
    mean, std = latent.prior.of(labels, starts)
    yaws = torch.arange(settings.yaw_starts, dtype=torch.float32).mul(2 * math.pi / settings.yaw_starts)
    state = [mean.clone(), torch.zeros(starts), torch.zeros(starts, 3), yaws.repeat(starts // settings.yaw_starts)]
    theta, basis = latent.theta.detach(), latent.basis.detach()
    kept = max(1, int(settings.kept_fraction * len(context)))

    def trimmed_loss(z: torch.Tensor, log_scale: torch.Tensor, offset: torch.Tensor, yaw: torch.Tensor) -> torch.Tensor:
        scale = log_scale.exp()
        moved = scale[:, None, None] * context @ _yaw_matrix(yaw).transpose(1, 2) + offset[:, None, :]
        residual = (flat_forward(latent.architecture, theta + z @ basis, moved) / scale[:, None] - targets).abs()
        return torch.topk(residual, kept, dim=1, largest=False).values.mean(1)

    def run(steps: int) -> None:
        z, log_scale, offset, yaw = (value.requires_grad_() for value in state)
        optimizer = torch.optim.Adam(
            [
                {"params": [z], "lr": settings.latent_learning_rate},
                {"params": [log_scale, offset, yaw], "lr": settings.pose_learning_rate},
            ]
        )
        for _ in range(steps):
            loss = (trimmed_loss(*state) + settings.prior_weight * (((z - mean) / std) ** 2).mean(1)).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    first = min(settings.prune_after, settings.steps)
    run(first)
    if settings.steps > first and starts > settings.kept_starts:
        with torch.no_grad():
            best = torch.topk(trimmed_loss(*state), settings.kept_starts, largest=False).indices
        state = [value.detach()[best].clone() for value in state]
        mean, std, labels = mean[best], std[best], None if labels is None else labels[best]
    run(settings.steps - first)
    with torch.no_grad():
        final = trimmed_loss(*state)
    return (*(value.detach().numpy().astype(np.float32) for value in (*state, final)), labels)


@dataclass(frozen=True)
class _Pose:
    """One MAP start: the decoded net's flat weights (1, P) and its similarity to the partial's frame,
    ``x_canonical = exp(log_scale) R(yaw) x_partial + offset``."""

    flat: torch.Tensor
    log_scale: float
    offset: np.ndarray
    yaw: float

    def field(self, x_partial: torch.Tensor, architecture: Architecture) -> torch.Tensor:
        """The start's signed distances (n,) at points (n, 3) of the partial's frame, in the partial's units."""
        scale = math.exp(self.log_scale)
        rotation = _yaw_matrix(torch.tensor([self.yaw]))[0]
        moved = scale * x_partial @ rotation.T + torch.from_numpy(self.offset).float()
        return _clipped(flat_forward(architecture, self.flat, moved[None])[0], moved) / scale


def _fuse_samples(
    latent: LatentFamily,
    partial: NeuralShape,
    poses: list[_Pose],
    scale: float,
    shift: np.ndarray,
    context: torch.Tensor,
    targets: torch.Tensor,
    surface: np.ndarray | None,
    settings: LatentCompletionSettings,
) -> tuple[TrainingData, np.ndarray | None]:
    """The fuse fit's samples in the completed frame ``x_out = scale x_partial + shift``: the observed context
    (distances times s) and, farther than ``prior_margin`` from it, the decoded prior of the best start
    (``poses[0]``) where it is trusted, the partial's own field elsewhere and in the prior's detached pieces
    (settings); plus the observed surface points there, when known."""
    observed = scale * context.numpy().astype(np.float64) + shift
    generator = torch.Generator().manual_seed(settings.seed)
    shift_t = torch.from_numpy(shift).float()
    partial_flat = torch.from_numpy(flatten(partial.weights))[None]

    def to_partial(x: torch.Tensor) -> torch.Tensor:
        return (x - shift_t) / scale

    def prior_field(x: torch.Tensor) -> torch.Tensor:  # the best start's field in completed units
        return scale * poses[0].field(to_partial(x), latent.architecture)

    def partial_field(x: torch.Tensor) -> torch.Tensor:
        x_partial = to_partial(x)
        return scale * _clipped(flat_forward(partial.architecture, partial_flat, x_partial[None])[0], x_partial)

    guarded = settings.ensemble_ratio is not None

    def target_and_partial(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The target (the prior where trusted, the partial's field elsewhere) and the partial's field at x."""
        value, partial_value = prior_field(x), partial_field(x)
        if not guarded:
            return value, partial_value
        trusted = torch.ones(len(x), dtype=torch.bool)
        for pose in poses[1:]:
            trusted &= torch.sign(scale * pose.field(to_partial(x), latent.architecture)) == torch.sign(value)
        return torch.where(trusted, value, partial_value), partial_value

    fields = [prior_field, partial_field] if guarded else [prior_field]
    uniform = (torch.rand(settings.prior_points, 3, generator=generator) * 2 - 1) * CUBE_HALF_SIZE
    share = len(uniform) // (len(fields) + 1)
    parts = [uniform[:share]]
    for index, near_field in enumerate(fields):
        parts.append(_near_surface(near_field, uniform[share * (index + 1) : share * (index + 2)], settings, generator))
    with torch.no_grad():
        candidates = torch.cat(parts).clamp(-CUBE_HALF_SIZE, CUBE_HALF_SIZE)
        candidate_sdf, candidate_partial = target_and_partial(candidates)
        if settings.detached_resolution:
            detached = _detached_parts(target_and_partial, settings.detached_resolution)
            cells = _cell_of(candidates, settings.detached_resolution)
            dropped = torch.from_numpy(detached[cells[:, 0], cells[:, 1], cells[:, 2]])
            candidate_sdf = torch.where(dropped, candidate_partial, candidate_sdf)
        distance = cKDTree(observed).query(candidates.numpy())[0]
    far = distance > settings.prior_margin
    points = np.concatenate([observed, candidates.numpy()[far]]).astype(np.float32)
    sdf = np.concatenate([scale * targets.numpy(), candidate_sdf.numpy()[far]]).astype(np.float32)
    surface_out = None if surface is None else (scale * surface.astype(np.float64) + shift).astype(np.float32)
    held_out = observed.astype(np.float32) if surface_out is None else surface_out
    return TrainingData(points, sdf, held_out, 0.0), surface_out


def _detached_parts(
    target_and_partial: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], resolution: int
) -> np.ndarray:
    """Cells (r, r, r) bool of a grid over the cube in the inside of the target field but in none of its parts
    that reach the partial's inside or come within a cell of its surface, grown by one cell: pieces the prior
    would add with nothing joining them to the seen shape (a completion continues what is there; such pieces
    are the decoded net's floaters). Within a cell, so that a partial thinner than a cell (a shell) still joins.
    ``target_and_partial(x)``: both fields (n,) at points (n, 3)."""
    cell = 2 * CUBE_HALF_SIZE / resolution
    axis = (torch.arange(resolution, dtype=torch.float32) + 0.5) * cell - CUBE_HALF_SIZE
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    shape = (resolution,) * 3
    target, partial = (torch.cat(values) for values in zip(*map(target_and_partial, grid.split(65_536))))
    inside = (target < 0).reshape(shape).numpy()
    seen = (partial < cell).reshape(shape).numpy()
    labels, _ = ndimage.label(inside, structure=np.ones((3, 3, 3)))
    joined = np.unique(labels[inside & seen])
    detached = inside & ~np.isin(labels, joined)
    return ndimage.binary_dilation(detached, structure=np.ones((3, 3, 3)))


def _cell_of(points: torch.Tensor, resolution: int) -> np.ndarray:
    """Grid cell indices (n, 3) int64 of points (n, 3) in the cube (as :func:`_detached_parts`' grid)."""
    cells = ((points.numpy() + CUBE_HALF_SIZE) / (2 * CUBE_HALF_SIZE) * resolution).astype(np.int64)
    return np.clip(cells, 0, resolution - 1)


def _clipped(values: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """A net's field (n,) at points (n, 3) of its normalised frame as extraction and rendering see it: cut off
    outside the sphere of radius ``EXTRACTION_RADIUS``, where nets are untrained and may hold stray surface."""
    return torch.maximum(values, points.norm(dim=-1) - EXTRACTION_RADIUS)


def _near_surface(
    field: Callable[[torch.Tensor], torch.Tensor],
    start: torch.Tensor,
    settings: LatentCompletionSettings,
    generator: torch.Generator,
) -> torch.Tensor:
    """Points (n, 3) near a field's surface: one Newton step of ``start`` (n, 3) onto it, jittered by the context offset."""
    start = start.clone().requires_grad_()
    value = field(start)
    (gradient,) = torch.autograd.grad(value.sum(), start)
    with torch.no_grad():
        projected = start - (value / gradient.pow(2).sum(1).clamp(min=1e-6))[:, None] * gradient
        return projected + settings.context_offset * torch.randn(projected.shape, generator=generator)


# --- shared ----------------------------------------------------------------------------------------


def latent_id(latent: LatentFamily) -> str:
    """A short content hash of a latent family (theta and basis), naming it in provenance."""
    digest = hashlib.sha256(latent.theta.numpy().tobytes())
    digest.update(latent.basis.numpy().tobytes())
    return f"latent-{digest.hexdigest()[:12]}"


def latent_provenance(
    operation: str, source_name: str, inputs: list[NeuralShape], identity: str, **details: str
) -> dict[str, str]:
    """Provenance of a shape made by a latent operation: what was done, to which inputs, with which latent family.

    ``source_sha256`` hashes the operation, the inputs' weights and the details, so the same request is recognisable.
    """
    digest = hashlib.sha256(f"{operation}/{identity}".encode())
    for shape in inputs:
        digest.update(flatten(shape.weights).tobytes())
    return operation_provenance(operation, source_name, inputs, digest, {"latent_family": identity}, details)


def class_probabilities(prior: LatentPrior, z: np.ndarray, class_means: torch.Tensor | None = None) -> np.ndarray:
    """Class posteriors (n, c) of latents z (n, k) over ``prior.class_names``: Gaussians at the class means
    (``class_means`` (c, k), e.g. the encoder's, else the prior's) with one isotropic variance pooled over
    classes and dimensions, so the ranking is the nearest class mean's (measured on the preview model's 330
    held-out shapes: 70%, against 56% with each class's own diagonal Gaussian and 46% for 5-NN among the
    training latents)."""
    if prior.class_mean is None or prior.class_std is None:
        raise NeuralShapesError("the latent family has no classes (it was trained without them)")
    means = prior.class_mean if class_means is None else class_means
    z_tensor = torch.as_tensor(np.asarray(z, dtype=np.float32))
    log_likelihood = -0.5 * (z_tensor[:, None, :] - means[None]).pow(2).sum(2) / prior.class_std.pow(2).mean()
    return torch.softmax(log_likelihood, 1).numpy()


def _class_labels(prior: LatentPrior, class_name: str | None, count: int) -> torch.Tensor | None:
    """Labels (count,) int64 of ``class_name`` in the prior's classes; None for no class."""
    if class_name is None:
        return None
    if class_name not in prior.class_names:
        known = ", ".join(prior.class_names) or "none: its prior has no classes"
        raise NeuralShapesError(f"unknown class '{class_name}' (classes of this latent family: {known})")
    return torch.full((count,), prior.class_names.index(class_name))


def _check_family(latent: LatentFamily, shapes: list[NeuralShape]) -> None:
    for shape in shapes:
        if shape.family_id != latent.family_id:
            raise NeuralShapesError(
                f"shape '{shape.name}' is of family {shape.family_id}; this latent family "
                f"decodes to family {latent.family_id}"
            )


def _shape(
    latent: LatentFamily, name: str, flat: np.ndarray, frame: Similarity, provenance: dict[str, str]
) -> NeuralShape:
    """A decoded shape: no fit, no reference surface (quality metrics NaN)."""
    metrics = {**NOT_MEASURED, "final_loss": 0.0, "fit_seconds": 0.0, "steps": 0.0}
    return NeuralShape(
        name, latent.architecture, latent.family_id, unflatten(latent.architecture, flat), frame, metrics, provenance
    )
