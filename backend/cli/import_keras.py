"""The ``import-keras`` command: Keras weights files (the paper's published Thingi10k nets) to neural shapes.

Each FILE.h5 becomes DIR/FILE.h5 in our format (:mod:`backend.shapes.keras_import` says what is read and what
is assumed); a bad file is one line naming it and the cause, the others go on, and the exit status is 1
if any failed. Imports only read and write small files: no torch, no Warp (but ``--refit``, which fits each
net's surface with the default family so that nf2vec takes it).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from backend.cli.output import err, fail, out
from backend.errors import NeuralShapesError
from backend.files import read_file_bytes, safe_file_stem
from backend.shapes.frame import Similarity
from backend.shapes.keras_import import MAX_MODEL_JSON_BYTES, import_keras_file, read_model_json
from backend.shapes.shape_file import write_shape


def import_keras_command(
    paths: Annotated[
        list[Path],
        typer.Argument(metavar="FILES...", help="Keras weights files (.h5, save_weights layout) or folders of them."),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the NAME.h5 neural shapes.")],
    key: Annotated[
        Path | None,
        typer.Option(help="The model's Keras JSON (the paper's key.json): activations read from it, not assumed."),
    ] = None,
    scale: Annotated[
        float, typer.Option(help="Similarity source -> normalised: x_n = scale * (x_source - centre).")
    ] = 1.0,
    centre: Annotated[
        tuple[float, float, float],
        typer.Option(metavar="X Y Z", help="Its centre, in the source frame (default: the files' frame is ours)."),
    ] = (0.0, 0.0, 0.0),
    negate: Annotated[
        bool, typer.Option("--negate", help="The files' signed distance is positive inside (ours: negative).")
    ] = False,
    refit: Annotated[
        bool,
        typer.Option(
            "--refit",
            help="Fit each net's surface with the default family instead (about a minute per shape on a CPU), so"
            " nf2vec can embed and interpolate it; the output is then a default-family member.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of lines.")] = False,
) -> None:
    """Import Keras weights files (the paper's published nets) as neural shapes that render and mesh;
    --refit makes default-family copies that nf2vec embeds and interpolates."""
    if not (math.isfinite(scale) and scale > 0) or not all(map(math.isfinite, centre)):
        fail(f"--scale must be a positive number and --centre finite, got {scale} and {list(centre)}")
    transform = Similarity(scale=float(scale), centre=np.asarray(centre, dtype=np.float64))
    try:
        model_json = None
        if key is not None:
            if key.is_file() and key.stat().st_size > MAX_MODEL_JSON_BYTES:
                raise NeuralShapesError(f"{key}: larger than {MAX_MODEL_JSON_BYTES:,} bytes; not a model JSON")
            model_json = read_model_json(read_file_bytes(key), key.name)
        output.mkdir(parents=True, exist_ok=True)
    except (NeuralShapesError, OSError) as error:
        fail(str(error))
    sources = [file for path in paths for file in (sorted(path.glob("*.h5")) if path.is_dir() else [path])]
    if not sources:
        fail("no Keras weights files (.h5) in " + ", ".join(map(str, paths)))
    rows, failures, taken = [], 0, set()
    for source in sources:
        stem = _unique(safe_file_stem(source.stem), taken)
        target = output / f"{stem}.h5"
        try:
            if target.exists() and target.resolve() == source.resolve():
                raise NeuralShapesError(f"{source}: the output would replace it; choose another output folder")
            shape = import_keras_file(source, model_json=model_json, transform=transform, negate=negate)
            if refit:
                with err.status(f"refitting {source.name} with the default family"):
                    shape = _refit(shape)
            write_shape(target, shape)
        except (NeuralShapesError, OSError) as error:
            err.print(f"[red]failed:[/red] {error}", highlight=False, soft_wrap=True)
            rows.append({"source": str(source), "output": None, "error": str(error)})
            failures += 1
            continue
        rows.append(
            {
                "source": str(source),
                "output": str(target),
                "net": shape.architecture.describe(),
                "parameters": shape.architecture.parameter_count,
                "family_id": shape.family_id,
                "architecture_from": shape.provenance["architecture_from"],
                **(
                    {"surface_error": shape.metrics["surface_error"], "fscore": shape.metrics["fscore"]}
                    if refit
                    else {}
                ),
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            if row["output"] is not None:
                out.print(
                    f"{Path(row['source']).name}: {row['net']}, {row['parameters']:,} parameters -> {row['output']}",
                    highlight=False,
                    soft_wrap=True,
                )
    if failures:
        raise typer.Exit(1)


def _refit(shape):
    """The default family's fit of an imported net's surface (torch and Warp load here, only for --refit)."""
    from backend.fitting.pipeline import refit_in_family
    from backend.shapes.family_file import resolve_family
    from backend.torch_device import limit_torch_threads

    limit_torch_threads()
    return refit_in_family(shape, resolve_family("default"))


def _unique(stem: str, taken: set[str]) -> str:
    """``stem``, or ``stem-2``, ``stem-3`` ... when files of one name come from several folders."""
    candidate, number = stem, 1
    while candidate in taken:
        number += 1
        candidate = f"{stem}-{number}"
    taken.add(candidate)
    return candidate
