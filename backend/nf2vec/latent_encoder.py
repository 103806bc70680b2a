"""The nf2vec encoder distilled into a latent family: a net's weights -> its latent z, in one pass.

``enc(w) = P(w) + head(nf2vec(w))``: the field projection ``P`` (:mod:`backend.nf2vec.latent_projection`,
a fixed linear map, the Gauss-Newton projection of the net's field onto the subspace) corrected by nf2vec's
:class:`backend.nf2vec.encoder.WeightEncoder` over the stacked weight matrix (minus the family's initial
weights, the ``reference``) with a linear head to the latent size k. The head starts at zero, so training
starts from the projection's z; the correction is trained so that the net the encoder names,
``w(enc(w_i)) = theta + enc(w_i) B``, has the shape's field:

    L1(f_{w(enc(w_i))}(x), sdf_i(x)) + latent_pull |enc(w_i) - z_i|^2 / k

on the shape's cached signed distance samples (the ones ``train-latent`` used), z_i being the latent the
auto-decoder gave shape i (matched by name). The inputs are the fitted nets, optional second-seed re-fits
of the same meshes (same z_i), the decoded nets ``w(z_i)``, and yaw-turned copies of any of them.
Turning a net about Z is exact (first layer ``W0 <- W0 R^T``), but its target is then the turned field,
not z_i, so a turned copy is held to the field L1 at turned sample points only.

:func:`refine_latent` starts from the encoder and fits z to the shape's own field, sampled from its own
net (its mesh may be gone from a library): a closer decode when a second or two per shape is affordable
(``similar``, ``classify`` and the operations use the encoder alone).

The file ``latent_encoder.safetensors`` (docs/format.md) sits in the model folder next to
``latent.safetensors``; it names the latent family it was distilled into by a digest of theta and B.
Points are in the normalised frame; signed distances are negative inside.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from backend.errors import NeuralShapesError, check_cancel
from backend.nf2vec.encoder import WeightEncoder, matrix_rows, weight_matrices
from backend.nf2vec.latent import (
    LatentFamily,
    LatentFit,
    RefineSettings,
    fit_latent,
    flat_forward,
    flatten,
    own_field_samples,
)
from backend.nf2vec.latent_projection import FieldProjection, ProjectionSettings, field_projection
from backend.nf2vec.latent_training import LatentProgress, sampled_shapes
from backend.nf2vec.resumable import LossReports, checkpoint_key, read_versioned, resume_checkpoint, write_versioned
from backend.nf2vec.training import (
    ShapeSamples,
    _draw,  # train-nf2vec's draw of a shape's mesh samples, shared
)
from backend.shapes.architecture import Architecture, ModelFamily
from backend.shapes.checkpoints import save_tensors
from backend.shapes.shape_file import NeuralShape
from backend.torch_device import training_device

FORMAT = "neural-shapes/nf2vec-latent-encoder"
VERSION = 1
ENCODER_NAME = "latent_encoder.safetensors"
CHECKPOINT_NAME = "latent-encoder-checkpoint.safetensors"


class LatentEncoderNet(torch.nn.Module):
    """forward(matrices (b, rows, width), already minus the reference) -> latents (b, k).

    nf2vec's row-wise encoder (``stages`` as :class:`WeightEncoder`'s stage sizes) and a linear head: the
    encoder's layer-normalised embedding cannot itself be a latent (it has zero mean over its dimensions).
    """

    def __init__(self, width: int, stages: tuple[int, ...], k: int):
        super().__init__()
        self.weights = WeightEncoder(width, stages)
        self.head = torch.nn.Linear(stages[-1], k)

    def forward(self, matrices: torch.Tensor) -> torch.Tensor:
        return self.head(self.weights(matrices))


@dataclass
class LatentEncoder:
    """A trained encoder from the nets of ``family_id`` to the latents of one latent family."""

    family_id: str
    architecture: Architecture
    stages: tuple[int, ...]
    net: LatentEncoderNet
    reference: torch.Tensor  # (matrix_rows, width): the family's initial weights as a stacked matrix
    latent_digest: str  # of the latent family's theta and basis (:func:`latent_digest`)
    training: dict[str, Any] = field(default_factory=dict)  # steps, seconds, final loss, inputs, settings
    # (c, k) the mean encoded z of the training nets of each of the latent prior's classes, when it has
    # classes: classify compares the encoder's z with these rather than with the auto-decoded class means
    # (330 held-out shapes: 81% against 78%), since an encoded z carries the encoder's own bias.
    class_means: torch.Tensor | None = None
    # The linear field projection the network corrects (z = projection(w) + net(w)); None in files of before
    # it (the network alone).
    projection: FieldProjection | None = None

    @property
    def k(self) -> int:
        return self.net.head.out_features

    def encode_flat(self, flat: torch.Tensor) -> torch.Tensor:
        """Latents (b, k) of nets given as flat weights (b, P); differentiable, in the net's current mode."""
        if self.projection is None:
            return self.net(flat_matrices(self.architecture, flat) - self.reference)
        head = self.net.head
        if not self.net.training and not (head.weight.any() or head.bias.any()):
            # An untrained correction (the projection-only encoder) adds exactly zero: skip the network,
            # 96% of the encoding time.
            return self.projection.project(flat)
        return self.projection.project(flat) + self.net(flat_matrices(self.architecture, flat) - self.reference)


# --- weights as the encoder reads them, and turned about Z -------------------------------------------


def flat_matrices(architecture: Architecture, flat: torch.Tensor) -> torch.Tensor:
    """The stacked matrices (b, matrix_rows, width) of nets given as flat weights (b, P): the layout of
    :func:`backend.nf2vec.encoder.weight_matrix` (per layer ``[W^T; b]``, the output layer zero-padded),
    in torch so that turned and decoded nets need no round trip through numpy."""
    sizes, blocks, start, count = architecture.layer_sizes, [], 0, flat.shape[0]
    for fan_in, fan_out in pairwise(sizes):
        weight = flat[:, start : start + fan_out * fan_in].reshape(count, fan_out, fan_in)
        start += fan_out * fan_in
        bias = flat[:, start : start + fan_out]
        start += fan_out
        block = torch.cat([weight.transpose(1, 2), bias[:, None, :]], dim=1)
        blocks.append(F.pad(block, (0, architecture.width - fan_out)))
    return torch.cat(blocks, dim=1)


def yaw_matrices(angles: torch.Tensor) -> torch.Tensor:
    """Rotations (b, 3, 3) by ``angles`` (b,) radians about +Z, counter-clockwise seen from above."""
    cos, sin = torch.cos(angles), torch.sin(angles)
    zero, one = torch.zeros_like(angles), torch.ones_like(angles)
    return torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], dim=1).reshape(-1, 3, 3)


def yaw_nets(architecture: Architecture, flat: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Flat weights (b, P) of the nets (b, P) turned by ``angles`` (b,) about +Z: the turned net's field at
    ``R p`` is the original's at ``p``, exactly (first layer ``W0 <- W0 R^T``; everything else kept)."""
    rows = architecture.width * 3
    first = flat[:, :rows].reshape(-1, architecture.width, 3) @ yaw_matrices(angles).transpose(1, 2)
    return torch.cat([first.reshape(-1, rows), flat[:, rows:]], dim=1)


# --- training data -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncoderSettings:
    """How the encoder is distilled (the design study's recipe, ``../shared/research/nf2vec-latent.md`` section 4 step 5)."""

    stages: tuple[int, ...] = (256, 256)  # WeightEncoder stage sizes before the head to k
    # The network learns a correction to this linear projection (None: z from the network alone, as files
    # of before it); its head starts at zero, so training starts from the projection's z.
    projection: ProjectionSettings | None = ProjectionSettings()
    steps: int = 15_000
    shapes_per_step: int = 16  # encoder inputs (nets) per step
    points_per_shape: int = 2048
    learning_rate: float = 1e-3  # AdamW, as train-nf2vec
    weight_decay: float = 1e-2
    latent_pull: float = 0.1  # x |enc - z_i|^2 / k, on unturned inputs
    yaw_fraction: float = 0.25  # of the inputs drawn, turned by a uniform random yaw
    decoded_inputs: bool = True  # also read the decoded nets w(z_i), as decoding and generation produce them
    samples_per_shape: int = 32_768  # cached samples per source mesh: train-latent's cache
    uniform_fraction: float = 0.5
    checkpoint_every: int = 500
    report_every: int = 25
    seed: int = 0


@dataclass
class EncoderTrainingData:
    """What the encoder learns from.

    names (n,) the training shapes; targets (n, k) their latents in the latent family; samples of their
    source meshes (``mesh_of_shape`` (n,)); inputs (m, P) float32 flat weights of the nets the encoder
    reads, ``shape_of_input`` (m,) int64 naming each one's shape; ``counts`` how many inputs of each kind
    (fitted, refits, decoded).
    """

    names: list[str]
    targets: torch.Tensor
    samples: ShapeSamples
    inputs: torch.Tensor
    shape_of_input: torch.Tensor
    counts: dict[str, int]


def latent_encoder_data(
    shapes: list[NeuralShape],
    latent: LatentFamily,
    collection: Path,
    cache: Path,
    settings: EncoderSettings = EncoderSettings(),
    refits: list[NeuralShape] | None = None,
    progress: Callable[[LatentProgress], None] | None = None,
) -> EncoderTrainingData:
    """The fitted ``shapes`` (each with a latent of that name in ``latent``), their samples and the encoder's inputs.

    Samples are found and cached as train-latent finds them (:func:`backend.nf2vec.training.shape_samples`).
    Each of ``refits`` (other fits of the same meshes) takes the shape whose source mesh has its sha256;
    one with no such shape, a shape of another family or without a latent, is a one-line error.
    """
    for shape in [*shapes, *(refits or [])]:
        if shape.family_id != latent.family_id:
            raise NeuralShapesError(
                f"shape '{shape.name}' is of family {shape.family_id}, the latent family of {latent.family_id}"
            )
    if latent.latents is None:
        raise NeuralShapesError("the latent family keeps no training latents to distil the encoder towards")
    row_of = {name: row for row, name in enumerate(latent.names)}
    missing = [shape.name for shape in shapes if shape.name not in row_of]
    if missing:
        raise NeuralShapesError(
            f"shape '{missing[0]}' has no latent in the latent family ({len(missing)} such); train-latent on it first"
        )
    samples = sampled_shapes(shapes, collection, cache, settings, progress)
    targets = latent.latents[[row_of[shape.name] for shape in shapes]].clone()
    shape_of_mesh = {shape.provenance.get("source_sha256"): index for index, shape in enumerate(shapes)}
    refit_shapes = []
    for refit in refits or []:
        index = shape_of_mesh.get(refit.provenance.get("source_sha256"))
        if index is None:
            raise NeuralShapesError(
                f"re-fit '{refit.name}': no training shape was fitted to its mesh "
                f"'{refit.provenance.get('source_name', '?')}'"
            )
        refit_shapes.append(index)
    fitted = torch.from_numpy(np.stack([flatten(shape.weights) for shape in [*shapes, *(refits or [])]]))
    order = list(range(len(shapes))) + refit_shapes
    inputs, counts = [fitted], {"fitted": len(shapes), "refits": len(refit_shapes), "decoded": 0}
    if settings.decoded_inputs:
        with torch.no_grad():
            inputs.append(latent.flat(targets))
        order += list(range(len(shapes)))
        counts["decoded"] = len(shapes)
    return EncoderTrainingData(
        [shape.name for shape in shapes],
        targets,
        samples,
        torch.cat(inputs),
        torch.tensor(order, dtype=torch.long),
        counts,
    )


# --- training ----------------------------------------------------------------------------------------


def encoded_class_means(encoder: LatentEncoder, latent: LatentFamily, data: EncoderTrainingData) -> torch.Tensor | None:
    """The mean encoder z (c, k) of the fitted nets and re-fits in ``data`` per class of ``latent``'s prior
    (its training labels by shape name); None when the latent family has no classes or labels. A class
    with no net keeps the prior's class mean."""
    if not latent.prior.class_names or latent.labels is None or latent.prior.class_mean is None:
        return None
    label_of = dict(zip(latent.names, latent.labels.tolist()))
    nets = data.counts["fitted"] + data.counts["refits"]  # the decoded nets are not what users encode
    with torch.no_grad():
        z = torch.cat([encoder.encode_flat(chunk) for chunk in data.inputs[:nets].split(256)])
    labels = torch.tensor([label_of[data.names[i]] for i in data.shape_of_input[:nets].tolist()])
    means = latent.prior.class_mean.clone()
    for index in labels.unique().tolist():
        means[index] = z[labels == index].mean(0)
    return means


def latent_digest(latent: LatentFamily) -> str:
    """sha256 (hex, 16 digits) of a latent family's theta and basis: the subspace an encoder's z decode in."""
    return hashlib.sha256(latent.theta.numpy().tobytes() + latent.basis.numpy().tobytes()).hexdigest()[:16]


def family_reference(family: ModelFamily) -> torch.Tensor:
    """The family's initial weights as a stacked matrix (matrix_rows, width): what the encoder subtracts."""
    return weight_matrices([family.initial_weights], family.architecture.width)[0]


def train_latent_encoder(
    data: EncoderTrainingData,
    latent: LatentFamily,
    family: ModelFamily,
    output: Path,
    settings: EncoderSettings = EncoderSettings(),
    progress: Callable[[LatentProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> LatentEncoder:
    """Distil an encoder from ``family`` nets into ``latent`` and write ``output/latent_encoder.safetensors``.

    Resumes ``output/latent-encoder-checkpoint.safetensors`` when its run key matches (the step count may
    grow between runs); a checkpoint of other inputs, latents or settings is a one-line error. ``cancel``
    stops at the next step with :class:`backend.errors.Cancelled` (the last checkpoint stays).
    """
    if family.family_id != latent.family_id:
        raise NeuralShapesError(f"the latent family is of family {latent.family_id}, not of {family.family_id}")
    report = progress or (lambda _: None)
    architecture, k = latent.architecture, latent.k
    device = training_device()
    torch.manual_seed(settings.seed)  # the encoder's initial weights, so reruns start alike
    net = LatentEncoderNet(architecture.width, tuple(settings.stages), k)
    projection = None
    if settings.projection is not None:
        # Deterministic, so a resumed run recomputes the same one; its metric comes from the fitted nets.
        projection = field_projection(latent, data.inputs[: data.counts["fitted"]], settings.projection, cancel)
        torch.nn.init.zeros_(net.head.weight)
        torch.nn.init.zeros_(net.head.bias)
    encoder = LatentEncoder(
        family.family_id,
        architecture,
        tuple(settings.stages),
        net.to(device),
        family_reference(family).to(device),
        latent_digest(latent),
        projection=None
        if projection is None
        else FieldProjection(projection.matrix.to(device), projection.offset.to(device)),
    )
    optimizer = torch.optim.AdamW(
        encoder.net.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    generator = torch.Generator().manual_seed(settings.seed)
    output.mkdir(parents=True, exist_ok=True)
    checkpoint = output / CHECKPOINT_NAME
    run_key = _run_key(data, encoder, settings)
    run = LossReports.of(settings, report, LatentProgress)
    _resume(checkpoint, run_key, run, encoder.net, optimizer, generator)
    theta, basis = latent.theta.detach().to(device), latent.basis.detach().to(device)
    inputs, targets = data.inputs.to(device), data.targets.to(device)
    count = len(data.inputs)
    batch_size = min(settings.shapes_per_step, count)
    encoder.net.train()
    while run.step < settings.steps:
        check_cancel(cancel, "latent encoder training cancelled")
        batch = torch.randperm(count, generator=generator)[:batch_size]
        shape = data.shape_of_input[batch]
        points, sdf = _draw(data.samples, shape, settings.points_per_shape, generator)
        turned = torch.rand(batch_size, generator=generator) < settings.yaw_fraction
        angles = torch.rand(batch_size, generator=generator) * (2 * math.pi) * turned  # 0: the identity, exactly
        points = points @ yaw_matrices(angles).transpose(1, 2)  # R p: where the turned field has the value at p
        points, sdf, angles, turned, batch, shape = (t.to(device) for t in (points, sdf, angles, turned, batch, shape))
        flat = yaw_nets(architecture, inputs[batch], angles)
        z = encoder.encode_flat(flat)
        field_l1 = (flat_forward(architecture, theta + z @ basis, points) - sdf).abs().mean()
        pull = (((z - targets[shape]) ** 2).sum(1) / k * (~turned)).mean()  # a turned net's latent is not z_i
        loss = field_l1 + settings.latent_pull * pull
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if run.step_done(field_l1.item()):
            state = {"encoder": encoder.net.state_dict(), "optimizer": optimizer.state_dict()}
            save_tensors(checkpoint, {**run.checkpoint(run_key), **state, "generator": generator.get_state()})
    encoder.net.eval().cpu()
    encoder.reference = encoder.reference.cpu()
    encoder.projection = projection
    encoder.class_means = encoded_class_means(encoder, latent, data)
    encoder.training = {
        **run.record(),
        "shapes": len(data.names),
        "inputs": dict(data.counts),
        "settings": asdict(settings),
    }
    save_latent_encoder(output, encoder)
    checkpoint.unlink(missing_ok=True)
    return encoder


def _run_key(data: EncoderTrainingData, encoder: LatentEncoder, settings: EncoderSettings) -> str:
    """What a checkpoint must match to be resumed: inputs, targets, latent family and settings (not the step count)."""
    digest = hashlib.sha256(
        data.inputs.numpy().tobytes() + data.targets.numpy().tobytes() + data.shape_of_input.numpy().tobytes()
    ).hexdigest()
    meshes = {"meshes": data.samples.meshes.names, "mesh_of_shape": data.samples.mesh_of_shape.tolist()}
    return checkpoint_key(
        settings, shapes=data.names, inputs=digest, family=encoder.family_id, latent=encoder.latent_digest, **meshes
    )


def _resume(
    path: Path,
    run_key: str,
    run: LossReports,
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> None:
    """Load the checkpoint, if there is one, into the run's bookkeeping, the net, optimiser and generator."""

    def restore(state: dict) -> None:
        net.load_state_dict(state["encoder"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        run.resume(state)

    resume_checkpoint(path, run_key, "latent encoder", "shapes, latents or settings", restore)


# --- using it ----------------------------------------------------------------------------------------


def _check_shapes(encoder: LatentEncoder, latent: LatentFamily, shapes: list[NeuralShape]) -> None:
    if encoder.latent_digest != latent_digest(latent) or encoder.k != latent.k:
        raise NeuralShapesError(
            f"the latent encoder was distilled into another latent family (digest {encoder.latent_digest}); retrain it"
        )
    for shape in shapes:
        if shape.family_id != encoder.family_id:
            raise NeuralShapesError(
                f"shape '{shape.name}' is of family {shape.family_id}, the latent encoder reads family {encoder.family_id}"
            )


def encode_latent(encoder: LatentEncoder, latent: LatentFamily, shapes: list[NeuralShape]) -> np.ndarray:
    """Latents (n, k) float32 of the shapes' nets, one encoder pass (batch norm on its running statistics,
    so a shape's latent does not depend on its batch). Shapes of another family are a one-line error."""
    _check_shapes(encoder, latent, shapes)
    if not shapes:
        return np.zeros((0, latent.k), np.float32)
    flat = torch.from_numpy(np.stack([flatten(shape.weights) for shape in shapes]))
    encoder.net.eval()
    with torch.no_grad():
        return encoder.encode_flat(flat).numpy().astype(np.float32)


def refine_latent(
    encoder: LatentEncoder, latent: LatentFamily, shapes: list[NeuralShape], settings: RefineSettings = RefineSettings()
) -> LatentFit:
    """Latents (n, k) of the shapes: the encoder's, then ``settings.fit.steps`` MAP steps (the latent
    family's overall prior) towards each shape's own field (:func:`own_field_samples`); ``data_loss`` (n,)
    is the final mean L1 to that field."""
    start = encode_latent(encoder, latent, shapes)
    flat = torch.from_numpy(np.stack([flatten(shape.weights) for shape in shapes]))
    points, sdf = own_field_samples(latent.architecture, flat, settings)
    return fit_latent(latent, points, sdf, initial=start, settings=settings.fit)


# --- the file ----------------------------------------------------------------------------------------


def save_latent_encoder(folder: Path, encoder: LatentEncoder) -> Path:
    """Write ``folder/latent_encoder.safetensors`` atomically (folder created); returns its path."""
    fields = {
        "family_id": encoder.family_id,
        "architecture": asdict(encoder.architecture),
        "k": encoder.k,
        "stages": list(encoder.stages),
        "latent_digest": encoder.latent_digest,
        "reference": encoder.reference,
        "encoder": encoder.net.state_dict(),
        "training": encoder.training,
        **({} if encoder.class_means is None else {"class_means": encoder.class_means}),
        **(
            {}
            if encoder.projection is None
            else {"projection": encoder.projection.matrix, "projection_offset": encoder.projection.offset}
        ),
    }
    return write_versioned(folder / ENCODER_NAME, FORMAT, VERSION, fields)


def load_latent_encoder(folder: Path, latent: LatentFamily) -> LatentEncoder:
    """Read ``folder/latent_encoder.safetensors`` for ``latent``: a missing, corrupt or foreign file, one of
    another family or distilled into another latent family, or weights that do not fit, is a one-line
    :class:`NeuralShapesError` naming the file."""
    path = Path(folder) / ENCODER_NAME
    data = read_versioned(path, "latent encoder", FORMAT, VERSION)
    if data.get("family_id") != latent.family_id:
        raise NeuralShapesError(
            f"{path}: a latent encoder of family {data.get('family_id')}, not of {latent.family_id}"
        )
    if data.get("latent_digest") != latent_digest(latent):
        raise NeuralShapesError(
            f"{path}: distilled into another latent family than {Path(folder) / 'latent.safetensors'}; retrain it"
        )
    try:
        architecture, stages, k = (
            Architecture(**data["architecture"]),
            tuple(int(size) for size in data["stages"]),
            int(data["k"]),
        )
        if architecture != latent.architecture or k != latent.k or not stages:
            raise ValueError("architecture or k differ from the latent family's")
        reference = data["reference"]
        if not isinstance(reference, torch.Tensor) or reference.shape != (
            matrix_rows(architecture),
            architecture.width,
        ):
            raise ValueError("reference weights of the wrong shape")
        net = LatentEncoderNet(architecture.width, stages, k)
        net.load_state_dict(data["encoder"])
        if not all(torch.isfinite(tensor).all() for tensor in net.state_dict().values() if tensor.is_floating_point()):
            raise ValueError("encoder weights are not finite")
        class_means = data.get("class_means")  # optional: files written before it load without
        if class_means is not None and (
            not isinstance(class_means, torch.Tensor)
            or not torch.isfinite(class_means).all()
            or class_means.shape != (len(latent.prior.class_names), k)
        ):
            raise ValueError("class means are not finite (classes, k) values of the latent family's classes")
        projection = None
        if "projection" in data:  # optional: files written before it load without (the network alone)
            matrix, offset = data["projection"], data["projection_offset"]
            for name, tensor, shape in (
                ("projection", matrix, (k, architecture.parameter_count)),
                ("projection offset", offset, (k,)),
            ):
                if (
                    not isinstance(tensor, torch.Tensor)
                    or tuple(tensor.shape) != shape
                    or not torch.isfinite(tensor).all()
                ):
                    raise ValueError(f"{name} is not a finite tensor of shape {shape}")
            projection = FieldProjection(matrix.float(), offset.float())
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        raise NeuralShapesError(
            f"{path}: malformed latent encoder ({type(error).__name__}: {error})".splitlines()[0]
        ) from None
    net.eval()
    return LatentEncoder(
        str(data["family_id"]),
        architecture,
        stages,
        net,
        reference.float(),
        str(data["latent_digest"]),
        dict(data.get("training") or {}),
        None if class_means is None else class_means.float(),
        projection,
    )
