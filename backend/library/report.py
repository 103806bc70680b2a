"""The report of a whole collection, from its manifest: counts per state, the surface-error distribution (the
paper's Figure 5: bins of 0.0005 up to 0.01, and what lies beyond), fit times, storage before and after,
and every failed source with its reason. Plain data (``--json``); :func:`histogram_png` draws the figure.
"""

from __future__ import annotations

import io
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from backend.errors import NeuralShapesError
from backend.files import write_atomically
from backend.library.manifest import Manifest

BIN_WIDTH = 0.0005
BIN_COUNT = 20  # 0 .. 0.01, the paper's range (its worst Thingi10k shape: 0.0097)
PAPER_TARGET = 0.003  # the paper's figure: 93% of Thingi10k below it with the default net


@dataclass(frozen=True)
class CollectionReport:
    """A collection's figures (normalised units for errors; bytes for storage)."""

    counts: dict[str, int]  # rows per manifest state
    surface_error_bins: list[float]  # left edges, BIN_WIDTH apart
    surface_error_counts: list[int]  # per bin; the last bin also holds everything above the range
    below_target: float | None  # fraction of done shapes with surface error below PAPER_TARGET
    worst_surface_error: float | None
    targets_met: int  # done shapes meeting every check of the fitter (surface error, tail, F-score, Chamfer)
    median_fit_seconds: float | None
    source_bytes: int  # of the done sources
    output_bytes: int  # their .h5 files
    compression: float | None  # source_bytes / output_bytes
    failed: list[dict]  # source and error of each failed row

    def as_dict(self) -> dict:
        return asdict(self)


def collection_report(manifest: Manifest) -> CollectionReport:
    """The figures of every row in ``manifest`` (all runs, not only the last)."""
    done = manifest.rows("done")
    errors = [row["surface_error"] for row in done if row["surface_error"] is not None]
    counts = [0] * BIN_COUNT
    for error in errors:
        counts[min(int(error / BIN_WIDTH), BIN_COUNT - 1)] += 1
    source_bytes = sum(row["source_bytes"] for row in done)
    output_bytes = sum(row["output_bytes"] or 0 for row in done)
    seconds = [row["fit_seconds"] for row in done if row["fit_seconds"] is not None]
    return CollectionReport(
        counts=manifest.counts(),
        surface_error_bins=[round(i * BIN_WIDTH, 6) for i in range(BIN_COUNT)],
        surface_error_counts=counts,
        below_target=sum(e < PAPER_TARGET for e in errors) / len(errors) if errors else None,
        worst_surface_error=max(errors) if errors else None,
        targets_met=sum(row["outcome"] == "targets met" for row in done),
        median_fit_seconds=statistics.median(seconds) if seconds else None,
        source_bytes=source_bytes,
        output_bytes=output_bytes,
        compression=source_bytes / output_bytes if output_bytes else None,
        failed=[{"source": row["source"], "error": row["error"]} for row in manifest.rows("failed")],
    )


def histogram_png(report: CollectionReport, path: Path, title: str = "") -> None:
    """Draw the surface-error histogram (as the paper's Figure 5) to a PNG; needs matplotlib."""
    try:
        import matplotlib
        import matplotlib.ticker

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise NeuralShapesError("the histogram needs matplotlib: pip install 'neural-shapes[plots]'") from None
    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=120)
    axes.bar(report.surface_error_bins, report.surface_error_counts, width=BIN_WIDTH, align="edge", edgecolor="white")
    axes.axvline(PAPER_TARGET, color="black", linestyle="--", linewidth=1, label=f"{PAPER_TARGET} (the paper's target)")
    axes.set_xlabel("surface error (mean |SDF| on the surface; the last bin holds all above)")
    axes.set_ylabel("shapes")
    axes.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # counts: no 1.25 shapes
    done = sum(report.surface_error_counts)
    share = f", {report.below_target:.0%} below {PAPER_TARGET}" if report.below_target is not None else ""
    axes.set_title(title or f"{done} shapes{share}")
    axes.legend(loc="upper right", fontsize="small")
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png")
    plt.close(figure)
    try:
        write_atomically(Path(path), image.getvalue())
    except OSError as error:
        raise NeuralShapesError(f"{path}: cannot write the histogram ({error.strerror or error})") from None
