"""The nf2vec operation commands: ``interpolate``, ``generate``, ``complete``, ``similar``, ``classify``.

``backend.cli`` registers them. Made shapes are ordinary neural shapes of the model's family, written
as NAME.h5 plus NAME.obj (their marching-cubes mesh in the frame they are placed in); progress goes to
stderr, a summary to stdout (``--json`` for pipelines). ``--model`` is an nf2vec model folder, by
default the bundled one; ``--decoder`` picks the latent family or nf2vec's implicit decoder
(:mod:`backend.nf2vec.ops.operations`; default: latent when the model folder has it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from backend.cli.output import fail, finite_or_none, out, progress_bar, shape_files
from backend.errors import NeuralShapesError
from backend.files import safe_file_stem
from backend.fitting.batched import fit_shapes
from backend.fitting.pipeline import fitted_shape
from backend.meshes.extraction import extract_mesh
from backend.meshes.loading import READABLE_MESH_SUFFIXES, load_mesh_file
from backend.meshes.writing import write_mesh_file
from backend.nf2vec.decoding import DecodeSettings, OperationProgress
from backend.nf2vec.ops.interpolation import in_between_times
from backend.nf2vec.ops.operations import classify, complete, generate, interpolate, similar
from backend.nf2vec.ops.tools import Nf2vecTools, load_tools
from backend.shapes.shape_file import NeuralShape, read_shape, write_shape

Model = Annotated[str, typer.Option("--model", help="nf2vec model folder ('default': the bundled one).")]
Output = Annotated[Path, typer.Option("-o", "--output", help="Folder for NAME.h5 and NAME.obj.")]
Resolution = Annotated[int, typer.Option(help="Marching cubes grid of the written meshes.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of lines.")]
Decoder = Annotated[
    str | None,
    typer.Option(
        "--decoder",
        help="latent (nets of the latent family, no refit) or implicit (nf2vec's decoder, decode and fit); "
        "default: latent when the model has it.",
    ),
]


def interpolate_command(
    a: Annotated[Path, typer.Argument(metavar="A.h5", help="The shape at t = 0.")],
    b: Annotated[Path, typer.Argument(metavar="B.h5", help="The shape at t = 1.")],
    output: Output,
    count: Annotated[int, typer.Option(help="In-betweens, evenly spaced strictly between A and B.")] = 1,
    t: Annotated[
        list[float] | None, typer.Option("--t", help="Explicit t values instead of --count (repeatable).")
    ] = None,
    space: Annotated[
        str, typer.Option(help="embedding (through the decoder) or weights (instant blend of the nets).")
    ] = "embedding",
    decoder: Decoder = None,
    model: Model = "default",
    resolution: Resolution = 128,
    as_json: AsJson = False,
) -> None:
    """In-betweens of two neural shapes of one family."""
    shapes = _run(
        model,
        lambda tools, report: interpolate(
            tools, _read(a), _read(b), t or in_between_times(count), space=space, decoder=decoder, progress=report
        ),
    )
    _write(shapes, output, resolution, as_json)


def generate_command(
    output: Output,
    count: Annotated[int, typer.Option(help="Shapes to generate.")] = 1,
    seed: Annotated[int, typer.Option(help="The same seed gives the same shapes.")] = 0,
    class_name: Annotated[
        str | None, typer.Option("--class", help="A class the model knows (e.g. chair); any by default.")
    ] = None,
    truncation: Annotated[
        float | None, typer.Option(help="0..1: 0 the class's typical shape, 1 its full spread (default 1).")
    ] = None,
    decoder: Decoder = None,
    model: Model = "default",
    resolution: Resolution = 128,
    as_json: AsJson = False,
) -> None:
    """New shapes sampled from the model (latent family prior, or the implicit decoder's latent GAN)."""
    shapes = _run(
        model, lambda tools, report: generate(tools, count, seed, class_name, truncation, decoder, progress=report)
    )
    _write(shapes, output, resolution, as_json)


def complete_command(
    partial: Annotated[
        Path,
        typer.Argument(metavar="PARTIAL", help="A neural shape (.h5) or a mesh with a part missing (fitted first)."),
    ],
    output: Output,
    class_name: Annotated[
        str | None,
        typer.Option(
            "--class", help="The shape's class (latent decoder), e.g. chair; default: its 3 likeliest compete."
        ),
    ] = None,
    decoder: Decoder = None,
    model: Model = "default",
    resolution: Resolution = 128,
    as_json: AsJson = False,
) -> None:
    """Complete a partial shape (latent family: fitted to its visible surface; implicit: the transfer network)."""

    def run(tools: Nf2vecTools, report: OperationProgress) -> list[NeuralShape]:
        if partial.suffix.lower() != ".h5" and partial.suffix.lower() in READABLE_MESH_SUFFIXES:
            mesh = load_mesh_file(partial)
            tools.decoder(decoder)  # a bad choice fails before the fit
            report(0.0, f"fitting {partial.name}")
            [result] = fit_shapes(tools.family, [mesh], DecodeSettings().fit)
            shape = fitted_shape(mesh, result, tools.family, source_name=partial.name)
            return [complete(tools, shape, mesh.trimesh(), decoder, progress=report, class_name=class_name)]
        return [complete(tools, _read(partial), decoder=decoder, progress=report, class_name=class_name)]

    _write(_run(model, run), output, resolution, as_json)


def similar_command(
    query: Annotated[Path, typer.Argument(metavar="QUERY.h5", help="The shape to find neighbours of.")],
    library: Annotated[list[Path], typer.Argument(help="Neural shapes (.h5) or folders of them to search.")],
    k: Annotated[int, typer.Option("-k", help="Neighbours to list.")] = 5,
    decoder: Decoder = None,
    model: Model = "default",
    as_json: AsJson = False,
) -> None:
    """The library shapes nearest to QUERY (latent z, or nf2vec's embedding)."""
    try:
        files = shape_files(library)
        tools = load_tools(model)
        neighbours = similar(tools, _read(query), [_read(file) for file in files], k, decoder)
    except NeuralShapesError as error:
        fail(str(error))
    rows = [{"file": str(files[n.index]), "distance": n.distance} for n in neighbours]
    if as_json:
        print(json.dumps(rows, indent=2))
    for row in [] if as_json else rows:
        out.print(f"{row['distance']:.4f}  {row['file']}", highlight=False)


def classify_command(
    shapes: Annotated[list[Path], typer.Argument(metavar="SHAPE.h5...", help="Neural shapes to classify.")],
    top: Annotated[int, typer.Option(help="Classes to list per shape.")] = 3,
    decoder: Decoder = None,
    model: Model = "default",
    as_json: AsJson = False,
) -> None:
    """The procedural classes a shape most resembles, with probabilities."""
    try:
        tools = load_tools(model)
        rows = [
            {
                "file": str(path),
                "classes": [{"class": c, "probability": p} for c, p in classify(tools, _read(path), decoder)[:top]],
            }
            for path in shapes
        ]
    except NeuralShapesError as error:
        fail(str(error))
    if as_json:
        print(json.dumps(rows, indent=2))
    for row in [] if as_json else rows:
        ranked = ", ".join(f"{c['class']} {c['probability']:.0%}" for c in row["classes"])
        out.print(f"{row['file']}: {ranked}", highlight=False)


def _read(path: Path) -> NeuralShape:
    try:
        return read_shape(path)
    except NeuralShapesError as error:
        raise NeuralShapesError(f"{path}: {error}") from None


def _run(model: str, operation: Callable[[Nf2vecTools, OperationProgress], list[NeuralShape]]) -> list[NeuralShape]:
    """Load the model and run ``operation`` with a progress bar on stderr; a one-line error exits 1."""
    with progress_bar(status=False, transient=True) as bar:
        task = bar.add_task("loading the nf2vec model", total=1.0)

        def report(fraction: float, message: str) -> None:
            bar.update(task, completed=fraction, description=message)

        try:
            return operation(load_tools(model), report)
        except (NeuralShapesError, ValueError) as error:
            fail(str(error))


def _write(shapes: list[NeuralShape], output: Path, resolution: int, as_json: bool) -> None:
    """NAME.h5 and NAME.obj (placed frame) per shape, then one summary line (or a JSON row) each."""
    rows = []
    try:
        output.mkdir(parents=True, exist_ok=True)
        for shape in shapes:
            mesh = extract_mesh(shape.architecture, shape.weights, resolution, transform=shape.transform)
            stem = safe_file_stem(shape.name)  # names come from .h5 files: never a path
            shape_path, mesh_path = output / f"{stem}.h5", output / f"{stem}.obj"
            write_mesh_file(mesh_path, mesh.vertices, mesh.faces, mesh.vertex_normals)
            write_shape(shape_path, shape)
            rows.append(
                {
                    "output": str(shape_path),
                    "mesh": str(mesh_path),
                    "faces": len(mesh.faces),
                    "surface_error": finite_or_none(shape.metrics["surface_error"]),
                    "fscore": finite_or_none(shape.metrics["fscore"]),
                }
            )
    except (NeuralShapesError, OSError) as error:
        fail(str(error))
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        quality = "" if row["fscore"] is None else f", F-score {row['fscore']:.3f} vs the decoded surface"
        out.print(
            f"wrote {row['output']} and {Path(row['mesh']).name} ({row['faces']:,} faces{quality})", highlight=False
        )
