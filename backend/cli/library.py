"""``neural-shapes convert``: whole asset libraries into neural shapes, resumable, on this machine or a Ray cluster.

Every source gets a row in ``DEST/manifest.sqlite`` (see :mod:`backend.library.manifest`); a re-run converts
only what is not done yet. The run shows live progress (items/s, ETA, failures) and ends with the
collection's report: a table, or ``--json``, and optionally the surface-error histogram as a PNG.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from backend.cli.output import err, fail, failing_on, out, progress_bar, settings_from
from backend.errors import NeuralShapesError
from backend.fitting.batched import FitSettings
from backend.fitting.pipeline import DEFAULT_FIT_BATCH, DEFAULT_RESOLUTION, Quality
from backend.library.conversion import CollectionSettings, RunProgress, RunSummary, convert_collection
from backend.library.executors import Executor, InProcess, LocalPool, RayCluster
from backend.library.manifest import Manifest
from backend.library.report import CollectionReport, collection_report, histogram_png
from backend.library.sources import expand_sources
from backend.meshes.loading import DEFAULT_MAX_FACES
from backend.shapes.family_file import resolve_family


def convert_command(
    sources: Annotated[
        list[str],
        typer.Argument(
            metavar="SRC...",
            help="Mesh files, folders (searched recursively), glob patterns ('lib/**/*.obj') or .txt lists of paths.",
        ),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Destination: NAME.h5 files and manifest.sqlite.")],
    workers: Annotated[
        int | None,
        typer.Option(
            min=0, help="Local worker processes; 0 runs batches in this process. Default: one per GPU, else 1."
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="Run the batches on a Ray cluster: 'auto' (a running one), 'local' (start one here) or host:port.",
        ),
    ] = None,
    cpus_per_task: Annotated[int, typer.Option(min=1, help="CPUs (and threads) each Ray task asks for.")] = 1,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Meshes fitted together in one batched model.")
    ] = DEFAULT_FIT_BATCH,
    max_attempts: Annotated[
        int, typer.Option(min=1, help="Attempts per source over all runs before it stays failed.")
    ] = 3,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Give every failed source one more attempt.")
    ] = False,
    family: Annotated[
        str, typer.Option(help="Model family: 'default', 'random' / 'random:SEED', or a FAMILY.h5.")
    ] = "default",
    quality: Annotated[
        Quality, typer.Option(help="standard: the default net; high: larger nets for shapes it cannot hold.")
    ] = Quality.STANDARD,
    max_steps: Annotated[int, typer.Option(help="Step limit per shape.")] = FitSettings.max_steps,
    samples: Annotated[int, typer.Option(help="Importance samples per shape.")] = FitSettings.samples,
    resolution: Annotated[
        int, typer.Option(help="Marching cubes grid for the checks and --meshes.")
    ] = DEFAULT_RESOLUTION,
    meshes: Annotated[bool, typer.Option("--meshes", help="Also write each reconstruction as NAME.obj.")] = False,
    half: Annotated[bool, typer.Option("--half", help="Store weights as float16.")] = False,
    max_faces: Annotated[int, typer.Option(help="Refuse meshes with more faces than this.")] = DEFAULT_MAX_FACES,
    histogram: Annotated[
        Path | None, typer.Option(metavar="PNG", help="Also draw the surface-error histogram to this PNG.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of a table.")] = False,
) -> None:
    """Convert a whole library, resumably: a manifest in DEST records each source (by content hash), so a
    re-run skips what is done, retries what failed and picks up what a killed run left; --ray spreads the
    batches over a cluster. Ends with the collection's report."""
    with failing_on(ValueError, NeuralShapesError):
        files = expand_sources(sources)
        settings = CollectionSettings(
            family=resolve_family(family),
            fit=settings_from(FitSettings, locals()),
            resolution=resolution,
            quality=quality,
            max_faces=max_faces,
            half_precision=half,
            meshes=meshes,
            batch_size=batch_size,
            max_attempts=max_attempts,
            retry_failed=retry_failed,
        )
        executor = _executor(workers, ray, cpus_per_task)
    try:
        # Ray prints cluster events ("(raylet) ... terminated") to stdout: keep it for the report alone.
        with contextlib.redirect_stdout(sys.stderr):
            summary = _run_with_progress(files, output, settings, executor)
    except NeuralShapesError as error:
        fail(str(error))
    manifest = Manifest(output)
    report = collection_report(manifest)
    manifest.close()
    if histogram is not None:
        with failing_on():
            histogram_png(report, histogram)
    if as_json:
        print(json.dumps({"run": _run_dict(summary), "collection": report.as_dict()}, indent=2))
    else:
        _print_report(summary, report, output)
    if summary.progress.failed or summary.unreadable:
        raise typer.Exit(1)


def _executor(workers: int | None, ray: str | None, cpus_per_task: int) -> Executor:
    """Ray when asked; else a local pool of ``workers`` (default: one per GPU, else one process using every
    core: batched fitting keeps them busy), or this process for 0."""
    if ray is not None:
        return RayCluster(ray, cpus_per_task=cpus_per_task)
    import torch

    gpus = [f"cuda:{index}" for index in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    count = (len(gpus) or 1) if workers is None else workers
    return InProcess() if count == 0 else LocalPool(count, devices=gpus)


def _run_with_progress(files: list[Path], output: Path, settings: CollectionSettings, executor: Executor) -> RunSummary:
    with progress_bar("converting", counts=True) as bar:
        task = bar.add_task("convert", total=None, status=f"on {executor.name}")

        def show(state: RunProgress) -> None:
            eta = "" if state.eta_seconds is None else f", ETA {state.eta_seconds:.0f} s"
            status = f"{state.items_per_second * 60:.1f} shapes/min{eta}, {state.failed} failed"
            bar.update(task, total=state.total, completed=state.finished, status=status)
            if not err.is_terminal:  # logs get a line per batch instead of the live bar
                err.print(f"{state.finished}/{state.total} done: {status}", highlight=False)

        return convert_collection(files, output, settings, executor, progress=show)


def _run_dict(summary: RunSummary) -> dict:
    state = summary.progress
    return {
        "executor": summary.executor,
        "to_convert": state.total,
        "converted": state.converted,
        "failed": state.failed,
        "retried": state.retried,
        "already_done": summary.already_done,
        "not_retried": summary.not_retried,
        "recovered": summary.recovered,
        "unreadable": summary.unreadable,
        "seconds": state.elapsed,
    }


def _print_report(summary: RunSummary, report: CollectionReport, output: Path) -> None:
    state = summary.progress
    out.print(
        f"this run ({summary.executor}): {state.converted} converted, {state.failed} failed, "
        f"{summary.already_done} already done, {summary.not_retried} failed before (not retried)"
        + (f", {summary.recovered} picked up from an interrupted run" if summary.recovered else "")
        + (f" in {state.elapsed:.0f} s" if state.total else ""),
        highlight=False,
    )
    table = Table(title=f"collection in {output}", show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    counts = report.counts
    table.add_row("shapes done / failed / pending", f"{counts['done']} / {counts['failed']} / {counts['pending']}")
    if report.below_target is not None:
        table.add_row("surface error below 0.003", f"{report.below_target:.0%}")
        table.add_row("worst surface error", f"{report.worst_surface_error:.4f}")
        table.add_row("meeting every check", f"{report.targets_met} of {counts['done']}")
    if report.median_fit_seconds is not None:
        table.add_row("median fit seconds", f"{report.median_fit_seconds:.1f}")
    if report.compression is not None:
        table.add_row(
            "storage before -> after",
            f"{report.source_bytes / 1e6:.1f} MB -> {report.output_bytes / 1e6:.2f} MB ({report.compression:.0f}:1)",
        )
    out.print(table)
    for row in report.failed:
        err.print(f"[red]failed:[/red] {row['error']}", highlight=False, soft_wrap=True)
    for reason in summary.unreadable:
        err.print(f"[red]unreadable:[/red] {reason}", highlight=False, soft_wrap=True)
