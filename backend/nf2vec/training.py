"""Training nf2vec: encoder and implicit decoder together, on neural shapes of one model family.

Each step draws ``shapes_per_step`` shapes and ``points_per_shape`` of each one's precomputed signed
distance samples, embeds the shapes' weights, decodes the embeddings at the sample points and updates
both networks with AdamW on the decoder loss. inr2vec (appendix B) uses 16 shapes and 10 K queries per
step, learning rate 1e-4, weight decay 1e-2; we take 2 K queries and 1e-3 so that training fits in well
under an hour on a CPU. Supervision is the signed distance of the shape's source mesh (negative inside),
sampled as fitting samples it, in the shape's normalised frame.

A checkpoint (tensors and state dicts only) is written into the model folder every ``checkpoint_every``
steps and removed at the end, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import torch

from backend.errors import NeuralShapesError
from backend.fitting.meta_learning import CollectionSamples, MetaProgress, MetaSettings, collection_samples
from backend.nf2vec.config import Nf2vecConfig
from backend.nf2vec.decoder import sdf_loss
from backend.nf2vec.model import Nf2vecModel, new_model, save_model, write_folder_family
from backend.nf2vec.resumable import LossReports, checkpoint_key
from backend.shapes.architecture import ModelFamily
from backend.shapes.checkpoints import load_tensors, save_tensors
from backend.shapes.shape_file import NeuralShape

CHECKPOINT_NAME = "checkpoint.safetensors"


@dataclass(frozen=True)
class TrainSettings:
    """How nf2vec is trained (see the module docstring for the paper's values)."""

    steps: int = 5000
    shapes_per_step: int = 16
    points_per_shape: int = 2048  # the paper has 10 K; 2 K keeps a default step under 1 s on 2 CPU cores
    learning_rate: float = 1e-3  # the paper's 1e-4 is too slow for a CPU budget (measured)
    weight_decay: float = 1e-2
    samples_per_shape: int = 32_768  # cached samples per source mesh
    # Half uniform in the cube, half importance samples near the surface. With fitting's 1/16 uniform the
    # decoder never learnt where the inside is: decoded surfaces had dozens of stray bodies (measured).
    uniform_fraction: float = 0.5
    checkpoint_every: int = 250
    report_every: int = 25
    seed: int = 0


@dataclass
class Nf2vecProgress:
    """What a progress callback receives: stage 'sampling' (step = meshes sampled) or 'training'."""

    stage: str
    step: int
    total: int
    loss: float = float("nan")  # mean training loss since the previous report


@dataclass
class ShapeSamples:
    """Signed distance samples per source mesh and, per shape, which mesh it was fitted to."""

    meshes: CollectionSamples  # points (meshes, m, 3), sdf (meshes, m), normalised frames
    mesh_of_shape: torch.Tensor  # (shapes,) int64


def one_family(shapes: list[NeuralShape], family: ModelFamily | None = None) -> NeuralShape:
    """The first shape, after checking that every shape is of one family (``family``, if given); otherwise
    a one-line error naming the ids."""
    if not shapes:
        raise NeuralShapesError("no neural shapes to train on")
    first = shapes[0]
    for shape in shapes[1:]:
        if shape.family_id != first.family_id:
            raise NeuralShapesError(
                f"shapes of different model families: '{first.name}' is {first.family_id}, "
                f"'{shape.name}' is {shape.family_id}; nf2vec trains on one family"
            )
    if family is not None and first.family_id != family.family_id:
        raise NeuralShapesError(
            f"the shapes are of family {first.family_id}, not of the given family "
            f"{family.family_id}; pass the family file they were fitted with"
        )
    return first


def shape_samples(
    shapes: list[NeuralShape],
    collection: Path,
    cache: Path,
    settings: TrainSettings = TrainSettings(),
    progress: Callable[[Nf2vecProgress], None] | None = None,
) -> ShapeSamples:
    """Samples of each shape's source mesh, found in ``collection`` by the shape's provenance source_name.

    Sampled as meta-learning samples a collection (:func:`backend.fitting.meta_learning.collection_samples`),
    cached in ``cache`` by mesh file name; a mesh whose samples are cached need not be in the folder.
    A missing mesh, or one whose content is not the shape's source (sha256 in the provenance), is a
    one-line error.
    """
    cached = _cached_names(cache)
    index_of: dict[Path, int] = {}
    mesh_of_shape = [index_of.setdefault(_source_mesh(shape, collection, cached), len(index_of)) for shape in shapes]
    report = progress or (lambda _: None)

    def relay(event: MetaProgress) -> None:
        report(Nf2vecProgress("sampling", event.step, event.total))

    meta = MetaSettings(
        samples_per_shape=settings.samples_per_shape, uniform_fraction=settings.uniform_fraction, seed=settings.seed
    )
    meshes = collection_samples(list(index_of), cache, meta, progress=relay)
    return ShapeSamples(meshes, torch.tensor(mesh_of_shape, dtype=torch.long))


def train_nf2vec(
    shapes: list[NeuralShape],
    samples: ShapeSamples,
    output: Path,
    family: ModelFamily,
    config: Nf2vecConfig = Nf2vecConfig(),
    settings: TrainSettings = TrainSettings(),
    progress: Callable[[Nf2vecProgress], None] | None = None,
) -> Nf2vecModel:
    """Train encoder + decoder on ``shapes`` (all of ``family``) and write the model folder ``output``."""
    one_family(shapes, family)
    report = progress or (lambda _: None)
    model = new_model(config, family, seed=settings.seed)
    matrices = model.encoder_inputs([shape.weights for shape in shapes])
    parameters = [*model.encoder.parameters(), *model.decoder.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    generator = torch.Generator().manual_seed(settings.seed)
    output.mkdir(parents=True, exist_ok=True)
    checkpoint = output / CHECKPOINT_NAME
    run_key = _run_key(shapes, config, settings)
    run = LossReports.of(settings, report, Nf2vecProgress)
    _resume(checkpoint, run_key, run, model, optimizer, generator)
    model.encoder.train()
    model.decoder.train()
    while run.step < settings.steps:
        batch = torch.randint(len(shapes), (settings.shapes_per_step,), generator=generator)
        points, sdf = _draw(samples, batch, settings.points_per_shape, generator)
        loss = sdf_loss(model.decoder(points, model.encoder(matrices[batch])), sdf, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if run.step_done(loss.item()):
            _save_checkpoint(checkpoint, run.checkpoint(run_key), model, optimizer, generator)
    model.encoder.eval()
    model.decoder.eval()
    model.training = {**run.record(), "shapes": len(shapes), "settings": asdict(settings)}
    save_model(output, model)
    write_folder_family(output, family)  # the folder then holds (or names) all its operations need
    checkpoint.unlink(missing_ok=True)
    return model


def decoder_loss(
    model: Nf2vecModel, shapes: list[NeuralShape], samples: ShapeSamples, points_per_shape: int = 4096, seed: int = 0
) -> float:
    """Mean eval-mode decoder loss over ``shapes`` at a fixed, seeded draw of their samples."""
    matrices = model.encoder_inputs([shape.weights for shape in shapes])
    generator = torch.Generator().manual_seed(seed)
    points, sdf = _draw(samples, torch.arange(len(shapes)), points_per_shape, generator)
    model.encoder.eval()
    model.decoder.eval()
    with torch.no_grad():
        return float(sdf_loss(model.decoder(points, model.encoder(matrices)), sdf, model.config))


def _cached_names(cache: Path) -> set[str]:
    if not cache.is_file():
        return set()
    try:  # the samples cache is trusted: see backend.fitting.meta_learning.collection_samples
        with h5py.File(cache, "r") as f:
            return set(f.keys())
    except OSError as error:
        raise NeuralShapesError(f"{cache}: not a samples cache ({error})".splitlines()[0]) from None


def _source_mesh(shape: NeuralShape, collection: Path, cached: set[str]) -> Path:
    name = shape.provenance.get("source_name", "")
    if Path(name).name != name:  # a name from the file, never a path: the mesh must lie in the collection folder
        raise NeuralShapesError(f"shape '{shape.name}': its source name '{name}' is not a file name")
    path = collection / name
    if name in cached and not path.is_file():
        return path  # only its name is needed: the samples are read from the cache
    if not name or not path.is_file():
        raise NeuralShapesError(f"shape '{shape.name}': its source mesh '{name}' is not in {collection}")
    expected = shape.provenance.get("source_sha256")
    if expected and hashlib.sha256(path.read_bytes()).hexdigest() != expected:
        raise NeuralShapesError(f"shape '{shape.name}': {path} is not the mesh it was fitted to (sha256 differs)")
    return path


def _draw(
    samples: ShapeSamples, batch: torch.Tensor, count: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random sample points (b, count, 3) and their signed distances (b, count) for the shapes ``batch``."""
    meshes = samples.mesh_of_shape[batch][:, None]
    picks = torch.randint(samples.meshes.points.shape[1], (len(batch), count), generator=generator)
    return samples.meshes.points[meshes, picks], samples.meshes.sdf[meshes, picks]


def _run_key(shapes: list[NeuralShape], config: Nf2vecConfig, settings: TrainSettings) -> str:
    """What a checkpoint must match to be resumed (the step count may grow between runs)."""
    return checkpoint_key(settings, config=asdict(config), shapes=[s.name for s in shapes], family=shapes[0].family_id)


def _save_checkpoint(
    path: Path, run: dict, model: Nf2vecModel, optimizer: torch.optim.Optimizer, generator: torch.Generator
) -> None:
    save_tensors(
        path,
        {
            **run,
            "encoder": model.encoder.state_dict(),
            "decoder": model.decoder.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
        },
    )


def _resume(
    path: Path,
    run_key: str,
    run: LossReports,
    model: Nf2vecModel,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> None:
    """Load the checkpoint, if there is one, into the run's bookkeeping, the model, optimiser and generator."""
    if not path.exists():
        return
    state = load_tensors(path, "not valid nf2vec checkpoint")
    if state.get("run") != run_key:
        raise NeuralShapesError(
            f"{path}: checkpoint of another run (shapes or settings differ); delete it or pass the same ones"
        )
    try:
        model.encoder.load_state_dict(state["encoder"])
        model.decoder.load_state_dict(state["decoder"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        run.resume(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise NeuralShapesError(
            f"{path}: not a valid nf2vec checkpoint ({type(error).__name__}: {error})".splitlines()[0]
        ) from None
