"""Mesh files in, neural shapes out: loading, batched fitting, quality figures, files on disk.

This is the service the command line (and later the HTTP service and the batch tools) call. A bad
input never stops the others: it is reported in its :class:`ConversionOutcome` and nothing is written
for it. Outputs per source ``NAME.ext``: ``NAME.h5`` (the neural shape) and ``NAME.obj`` (its marching
cubes reconstruction in the source frame).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import trimesh

from backend import __version__
from backend.errors import NeuralShapesError, check_cancel
from backend.files import safe_file_stem
from backend.fitting.batched import FitProgress, FitResult, FitSettings, fit_shapes, sign_method_for
from backend.fitting.checks import (
    Evaluation,
    Measured,
    Targets,
    evaluate,
    evaluation_points,
    failed_checks,
    reconstruction_failures,
    source_field_quality,
)
from backend.meshes.extraction import extract_mesh
from backend.meshes.loading import DEFAULT_MAX_FACES, NormalisedMesh, load_mesh_file, normalise_mesh
from backend.meshes.metrics import CHAMFER_POINTS, ReconstructionQuality
from backend.meshes.visibility import visible_surface
from backend.meshes.writing import write_mesh_file
from backend.shapes.architecture import Architecture, ModelFamily, random_family
from backend.shapes.frame import Similarity
from backend.shapes.shape_file import NeuralShape, write_shape

DEFAULT_RESOLUTION = 128
DEFAULT_FIT_BATCH = 16


# The nets "high" quality tries, in turn, for shapes the default net cannot hold: wider ReLU nets (each
# four times the parameters of the one before) from a seeded random start, as no meta-learned family
# exists for them; the file grows with them (118 kB, 465 kB).
ESCALATION = (Architecture(hidden_layers=8, width=64), Architecture(hidden_layers=8, width=128))


class Quality(StrEnum):
    """How hard a conversion tries: the default net only, or larger nets where it falls short."""

    STANDARD = "standard"
    HIGH = "high"

    @property
    def escalation(self) -> tuple[Architecture, ...]:
        """The nets tried after the family's for shapes it cannot hold (:func:`fit_and_escalate`)."""
        return ESCALATION if self == Quality.HIGH else ()


@dataclass
class ConversionOutcome:
    """One source file's result: the written shape, or the one-line error that stopped it."""

    source: Path
    shape: NeuralShape | None = None
    output: Path | None = None
    mesh_output: Path | None = None
    error: str | None = None
    skipped: bool = False  # its output already existed (``skip_existing``): nothing was fitted or written


def evaluate_shape(shape: NeuralShape, mesh: NormalisedMesh, resolution: int = DEFAULT_RESOLUTION) -> Evaluation:
    """Surface error (mean and tail), Chamfer and F-score of a shape against a mesh given in the shape's
    normalised frame (for a source mesh: its :func:`visible_surface`, which fits are measured on), and its
    marching-cubes reconstruction (normalised frame): the measurement a fit of the mesh decides on.
    """
    shell = shape.metrics.get("shell", 0.0)  # a sheet fitted as a shell is measured against the thickened sheet
    points = evaluation_points(mesh.vertices, mesh.faces)
    return evaluate(shape.architecture, shape.weights, mesh.vertices, mesh.faces, points, resolution, shell)


def write_in_source_frame(path: Path, mesh: trimesh.Trimesh, transform: Similarity) -> None:
    """Write a normalised-frame mesh (with its vertex normals) moved back to the source mesh's frame."""
    write_mesh_file(path, transform.to_source(mesh.vertices), mesh.faces, mesh.vertex_normals)


def convert_files(
    sources: list[Path],
    out_dir: Path,
    family: ModelFamily,
    settings: FitSettings = FitSettings(),
    *,
    resolution: int = DEFAULT_RESOLUTION,
    half_precision: bool = False,
    max_faces: int = DEFAULT_MAX_FACES,
    fit_batch: int = DEFAULT_FIT_BATCH,
    skip_existing: bool = False,
    quality: Quality = Quality.STANDARD,
    progress: Callable[[Path, FitProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> list[ConversionOutcome]:
    """Convert mesh files into ``.h5`` neural shapes (+ reconstructed ``.obj``) in ``out_dir``.

    Meshes are fitted ``fit_batch`` at a time in one batched model and written as each is done, so with
    ``skip_existing`` (sources whose ``.h5`` is already there are left alone) an interrupted run resumes.
    ``quality`` HIGH fits the shapes ``family``'s net cannot hold again with larger nets
    (:func:`fit_and_escalate`). Returns one outcome per source, in order.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    outcomes = [ConversionOutcome(source=Path(s)) for s in sources]
    stems = _output_stems([o.source for o in outcomes])
    loaded: list[tuple[ConversionOutcome, NormalisedMesh]] = []
    for outcome in outcomes:
        existing = out_dir / f"{stems[outcome.source]}.h5"
        if skip_existing and existing.is_file():
            outcome.output, outcome.skipped = existing, True
            continue
        try:
            loaded.append((outcome, load_mesh_file(outcome.source, max_faces=max_faces)))
        except NeuralShapesError as error:
            outcome.error = str(error)
    for start in range(0, len(loaded), fit_batch):
        group = loaded[start : start + fit_batch]
        meshes = [mesh for _, mesh in group]
        report = None
        if progress is not None:
            report = lambda event, group=group: progress(group[event.shape_index][0].source, event)  # noqa: E731
        names = [outcome.source.name for outcome, _ in group]
        for fit in fit_and_escalate(
            family,
            meshes,
            settings,
            escalation=Quality(quality).escalation,
            resolution=resolution,
            source_names=names,
            progress=report,
            cancel=cancel,
        ):
            outcome = group[fit.index][0]
            if fit.error is not None:
                outcome.error = f"{outcome.source}: {fit.error}"
                continue
            try:
                _write(outcome, fit, out_dir / stems[outcome.source], half_precision)
            except (NeuralShapesError, OSError) as error:
                outcome.error = f"{outcome.source}: {error}"
    return outcomes


@dataclass
class EvaluatedFit:
    """One mesh of :func:`fit_and_evaluate`: its fitted shape with the quality metrics added and its
    marching-cubes reconstruction (normalised frame), or the error that stopped its evaluation."""

    index: int  # in the meshes given
    mesh: NormalisedMesh
    shape: NeuralShape | None = None
    reconstruction: trimesh.Trimesh | None = None
    error: Exception | None = None


def fit_and_evaluate(
    family: ModelFamily,
    meshes: list[NormalisedMesh],
    settings: FitSettings = FitSettings(),
    *,
    resolution: int = DEFAULT_RESOLUTION,
    source_names: list[str] | None = None,
    progress: Callable[[FitProgress], None] | None = None,
    evaluating: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
    compute_slot: AbstractContextManager = nullcontext(),
) -> Iterator[EvaluatedFit]:
    """Fit meshes (normalised frame) in one batched model, then evaluate each (surface error, Chamfer,
    F-score at ``resolution``) and yield it at once, so a caller can keep it before the next is done.

    ``source_names`` are the shapes' provenance source names (default: the meshes' names);
    ``progress`` gets the fit's events, ``evaluating(index)`` is called before each evaluation, which
    runs inside ``compute_slot`` (a reusable context manager: the service's compute queue). A mesh whose
    evaluation fails is yielded with its error and the others go on; ``cancel`` stops between meshes.
    """
    names = source_names or [mesh.name for mesh in meshes]
    settings = replace(settings, check_resolution=resolution)  # the fit's check sees the surface the user gets
    meshes = [visible_surface(mesh) for mesh in meshes]  # fitted and measured on what the source shows
    results = fit_shapes(family, meshes, settings, progress=progress, cancel=cancel)
    for index, (mesh, result, name) in enumerate(zip(meshes, results, names)):
        check_cancel(cancel, "fit cancelled")
        if evaluating is not None:
            evaluating(index)
        shape = fitted_shape(mesh, result, family, source_name=name)
        evaluation = result.evaluation  # the fit's own last measurement, when it ended on it
        try:
            if evaluation is None:
                with compute_slot:
                    evaluation = evaluate_shape(shape, mesh, resolution)
        except (NeuralShapesError, ValueError) as error:
            yield EvaluatedFit(index, mesh, error=error)
            continue
        shape.metrics.update(evaluation.metrics)
        shape.provenance["fit_outcome"] = fit_outcome(shape.metrics, settings.targets)
        yield EvaluatedFit(index, mesh, shape, evaluation.reconstruction)


def fit_and_escalate(
    family: ModelFamily,
    meshes: list[NormalisedMesh],
    settings: FitSettings = FitSettings(),
    *,
    escalation: tuple[Architecture, ...] = (),
    resolution: int = DEFAULT_RESOLUTION,
    source_names: list[str] | None = None,
    progress: Callable[[FitProgress], None] | None = None,
    evaluating: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
    compute_slot: AbstractContextManager = nullcontext(),
) -> Iterator[EvaluatedFit]:
    """:func:`fit_and_evaluate` (the same arguments; indices count among all the meshes given), with
    capacity where it is needed: a shape whose final figures fail a check is fitted again with the next
    net of ``escalation`` (:data:`ESCALATION` for quality "high"), from a seeded random start, and the
    best fit kept (targets met first, then the higher F-score). A shape is yielded as soon as it meets
    the targets or has no net left to try; the provenance of an escalated one says what each net
    reached ("escalation").

    Shapes with a net other than ``family``'s render, mesh and combine like any other, but nf2vec
    operations take only the family their model was trained on (the default).
    """
    names = source_names or [mesh.name for mesh in meshes]
    families = [family] + [random_family(net, settings.seed) for net in escalation]
    pending, kept, attempts = list(range(len(meshes))), {}, {index: [] for index in range(len(meshes))}
    bounds: dict[int, ReconstructionQuality] = {}  # what the source's own field reaches, measured once per mesh
    for level, net_family in enumerate(families):
        if not pending:
            return
        rows, pending = pending, []
        report = evaluation = None  # both name a shape by its place among all the meshes given
        if progress is not None:
            report = lambda event, rows=rows: progress(replace(event, shape_index=rows[event.shape_index]))  # noqa: E731
        if evaluating is not None:
            evaluation = lambda index, rows=rows: evaluating(rows[index])  # noqa: E731
        for fit in fit_and_evaluate(
            net_family,
            [meshes[index] for index in rows],
            settings,
            resolution=resolution,
            source_names=[names[index] for index in rows],
            progress=report,
            evaluating=evaluation,
            cancel=cancel,
            compute_slot=compute_slot,
        ):
            fit.index = rows[fit.index]
            if fit.shape is not None:
                attempts[fit.index].append(
                    f"{net_family.architecture.describe()}: {fit.shape.provenance['fit_outcome']}"
                )
            fit = _better(kept.pop(fit.index, None), fit)
            if len(attempts[fit.index]) > 1 and fit.shape is not None:
                fit.shape.provenance["escalation"] = " | ".join(attempts[fit.index])
            if level == len(families) - 1 or fit.shape is None or _met(fit):
                yield fit
            elif _no_net_can_pass(fit, bounds, resolution, settings.targets, compute_slot):
                yield fit
            else:
                kept[fit.index] = fit
                pending.append(fit.index)


def refit_in_family(
    shape: NeuralShape,
    family: ModelFamily,
    settings: FitSettings = FitSettings(),
    *,
    resolution: int = 256,
    check_resolution: int = DEFAULT_RESOLUTION,
) -> NeuralShape:
    """A member of ``family`` fitted to another net's surface: ``shape``'s zero level set, meshed at
    ``resolution`` in its own frame, is fitted like a mesh (same frame and transform) and measured against
    (Chamfer, F-score at ``check_resolution``). How shapes of a foreign family (imported Keras nets, another
    family's members) join the default family, whose nets nf2vec embeds and interpolates.

    Raises :class:`NeuralShapesError` when the shape has no surface at that resolution or the fit fails.
    """
    surface = extract_mesh(shape.architecture, shape.weights, resolution)
    if len(surface.faces) == 0:
        raise NeuralShapesError(f"'{shape.name}' has no surface at {resolution}^3: nothing to fit")
    mesh = normalise_mesh(
        shape.transform.to_source(surface.vertices),
        surface.faces,
        name=shape.name,
        source_sha256=shape.provenance.get("source_sha256"),
        transform=shape.transform,
    )
    [fit] = fit_and_evaluate(family, [mesh], settings, resolution=check_resolution, source_names=[shape.name])
    if fit.shape is None:
        raise NeuralShapesError(f"'{shape.name}': the refit failed ({fit.error})")
    kept = {k: v for k, v in shape.provenance.items() if k not in fit.shape.provenance}
    fit.shape.provenance.update(kept, refit_of=f"{shape.family_id} ({shape.architecture.describe()}) at {resolution}^3")
    return fit.shape


def _no_net_can_pass(
    fit: EvaluatedFit,
    bounds: dict[int, ReconstructionQuality],
    resolution: int,
    targets: Targets,
    compute_slot: AbstractContextManager,
) -> bool:
    """Before a larger net is tried for a shape that fails the reconstruction checks: whether the source's
    own field fails them too at ``resolution`` (parts, or gaps between parts, thinner than the grid), so
    that no net can pass. Measured once per mesh (``bounds``, by index), a few seconds; where no net can
    pass, the figures go into the shape's metrics (``source_fscore``, ``source_chamfer``) and outcome."""
    shape, mesh = fit.shape, fit.mesh
    reached = ReconstructionQuality(chamfer=shape.metrics["chamfer"], fscore=shape.metrics["fscore"])
    if not reconstruction_failures(reached, targets):
        return False  # only the surface error failed: capacity may help
    if fit.index not in bounds:
        points = evaluation_points(mesh.vertices, mesh.faces)[:CHAMFER_POINTS]
        shell = shape.metrics.get("shell", 0.0)
        with compute_slot:
            bounds[fit.index] = source_field_quality(
                mesh.vertices, mesh.faces, points, resolution, sign_method_for(mesh), shell
            )
    bound = bounds[fit.index]
    if not reconstruction_failures(bound, targets):
        return False
    shape.metrics.update(source_fscore=bound.fscore, source_chamfer=bound.chamfer)
    shape.provenance["fit_outcome"] += (
        f" (no net can pass at {resolution}^3: the source's own field reaches F-score {bound.fscore:.3f},"
        f" Chamfer {bound.chamfer:.4f}; parts or gaps thinner than the grid)"
    )
    return True


def _met(fit: EvaluatedFit) -> bool:
    return fit.shape is not None and fit.shape.provenance["fit_outcome"] == "targets met"


def _better(kept: EvaluatedFit | None, new: EvaluatedFit) -> EvaluatedFit:
    """The better of two fits of one mesh: one with a shape, then one meeting the targets, then the higher F-score."""
    if kept is None:
        return new
    rank = [
        (fit.shape is not None, _met(fit), fit.shape.metrics["fscore"] if fit.shape else 0.0) for fit in (kept, new)
    ]
    return new if rank[1] > rank[0] else kept


def shape_figures(shape: NeuralShape) -> dict[str, float | int | str]:
    """A converted shape's figures as reports and the collection manifest give them: surface error and its
    tail, Chamfer (inf for an empty surface), F-score, fit seconds, steps, the net and the checks' outcome."""
    m = shape.metrics
    return {
        **{key: float(m[key]) for key in ("surface_error", "surface_error_p99", "chamfer", "fscore", "fit_seconds")},
        "steps": int(m["steps"]),
        "net": shape.architecture.describe(),
        "outcome": shape.provenance["fit_outcome"],
    }


def fit_outcome(metrics: dict[str, float], targets: Targets) -> str:
    """ "targets met", or the checks a shape's final figures fail ("F-score 0.912 < 0.950; Chamfer ...")."""
    measured = Measured(
        metrics["surface_error"],
        metrics["surface_error_p99"],
        metrics["final_loss"],
        metrics["fscore"],
        metrics["chamfer"],
    )
    return "; ".join(failed_checks(measured, targets)) or "targets met"


def _write(outcome: ConversionOutcome, fit: EvaluatedFit, stem: Path, half_precision: bool) -> None:
    mesh_output = stem.with_suffix(".obj")
    write_in_source_frame(mesh_output, fit.reconstruction, fit.mesh.transform)
    write_shape(stem.with_suffix(".h5"), fit.shape, half_precision=half_precision)
    outcome.shape, outcome.output, outcome.mesh_output = fit.shape, stem.with_suffix(".h5"), mesh_output


def fitted_shape(mesh: NormalisedMesh, result: FitResult, family: ModelFamily, *, source_name: str) -> NeuralShape:
    """The neural shape of one fit result with its fit figures and provenance (quality metrics not yet added)."""
    return NeuralShape(
        name=mesh.name,
        architecture=family.architecture,
        family_id=family.family_id,
        weights=result.weights,
        transform=mesh.transform,
        metrics={
            "final_loss": result.final_loss,
            "fit_seconds": result.fit_seconds,
            "steps": result.steps,
            "shell": result.shell,
        },
        provenance={
            "source_name": source_name,
            "source_sha256": mesh.source_sha256,
            "tool_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )


def _output_stems(sources: list[Path]) -> dict[Path, str]:
    """Output names per source: its (sanitised) stem, or stem-ext when two sources share a stem."""
    stems = {s: safe_file_stem(s.stem) for s in sources}
    counts: dict[str, int] = {}
    for stem in stems.values():
        counts[stem] = counts.get(stem, 0) + 1
    return {s: stem if counts[stem] == 1 else f"{stem}-{s.suffix.lstrip('.').lower()}" for s, stem in stems.items()}
