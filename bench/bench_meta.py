"""Fit speed from the bundled meta-learned family vs the random shared init vs the paper's recipe.

    .venv/bin/python bench/bench_meta.py [--paper-cap SECONDS] [--generated N]

Held-out meshes, none in the family's training collection: the bundled samples plus generated shapes
of the classes the default family was trained without (lamp, rocket). For each mesh, seconds
(sampling included) and steps until the fitter's stopping rule first holds for 0.005 and 0.003
(held-out surface error at most that, and mean training L1 at most 0.01):
(a) the bundled meta family: its inner steps, then our Adam fine-tuning (lr 1e-3, batch 2048);
(b) the random shared init with the same sampling and fine-tuning;
(c) the paper's recipe: 10 M uniform pool resampled by exp(-60 |d|) to 1 M points, random init,
    Adam at a fixed 1e-4, batch 2048, up to 102 epochs; stopped after ``--paper-cap`` seconds of
    training, in which case its times are lower bounds ("> cap").
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from report import table

from backend.datasets.procedural import make_shape
from backend.errors import Cancelled
from backend.fitting.batched import FitSettings, TrainingData, sample_shape, sign_method_for, train_shapes
from backend.meshes.loading import NormalisedMesh, find_mesh_files, load_mesh_file, normalise_mesh
from backend.meshes.sampling import DEFAULT_BETA
from backend.shapes.architecture import ModelFamily, random_family
from backend.shapes.family_file import DEFAULT_FAMILY_FILE, read_family
from kernels.mesh_sdf import MeshDistance

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT_CLASSES = ("lamp", "rocket")
TARGETS = (0.005, 0.003)
OURS = FitSettings(eval_every=50, max_steps=20_000, target_surface_error=min(TARGETS))
PAPER = replace(OURS, learning_rate=1e-4, min_learning_rate=1e-4, patience=10**9, max_steps=102 * 1_000_000 // 2048)
PAPER_POOL = 10_000_000


def held_out_meshes(generated: int) -> list[NormalisedMesh]:
    meshes = [load_mesh_file(path) for path in find_mesh_files([ROOT / "samples"])]
    for index in range(generated):
        class_name = HELD_OUT_CLASSES[index % len(HELD_OUT_CLASSES)]
        mesh = make_shape(class_name, seed=900_000 + index)
        meshes.append(normalise_mesh(mesh.vertices, mesh.faces, name=f"{class_name}_{index}"))
    return meshes


def paper_samples(mesh: NormalisedMesh, settings: FitSettings, held_out: np.ndarray, seed: int = 0) -> TrainingData:
    """The paper's sampling: signed distances of a 10 M uniform pool, resampled by exp(-beta |d|)."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    distance = MeshDistance(mesh.vertices, mesh.faces, device="cpu")
    pool = rng.uniform(-1, 1, size=(PAPER_POOL, 3)).astype(np.float32)
    sdf = distance.distance(pool, sign_method_for(mesh))
    weights = np.exp(-DEFAULT_BETA * np.abs(sdf.astype(np.float64)))
    chosen = rng.choice(PAPER_POOL, size=settings.samples, p=weights / weights.sum())
    return TrainingData(pool[chosen], sdf[chosen].astype(np.float32), held_out, time.perf_counter() - started)


def time_to_targets(family: ModelFamily, data: TrainingData, settings: FitSettings, cap: float | None = None) -> dict:
    """Seconds (sampling included) and steps at which the held-out surface error first reaches each target."""
    reached: dict[float, tuple[float, int]] = {}
    cancel = threading.Event()
    started = time.perf_counter()

    def watch(event) -> None:
        elapsed = time.perf_counter() - started
        for target in TARGETS:
            fitted = event.surface_error <= target and event.loss <= settings.target_loss  # the fitter's stopping rule
            if event.stage == "fitting" and fitted and target not in reached:
                reached[target] = (data.sample_seconds + elapsed, event.step)
        if cap is not None and elapsed > cap:
            cancel.set()

    try:
        train_shapes(family, [data], settings, progress=watch, cancel=cancel)
    except Cancelled:
        pass
    bound = data.sample_seconds + (time.perf_counter() - started)
    return {target: reached.get(target, (None, None)) for target in TARGETS} | {"bound": bound}


def cell(result: dict, target: float) -> str:
    seconds, steps = result[target]
    return f"> {result['bound']:.0f} s" if seconds is None else f"{seconds:.1f} s / {steps}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--paper-cap", type=float, default=180.0, help="seconds of training before the paper's recipe is stopped"
    )
    parser.add_argument("--generated", type=int, default=4, help="generated held-out meshes (lamp, rocket, ...)")
    args = parser.parse_args()
    meta = read_family(DEFAULT_FAMILY_FILE)
    random = random_family()
    rows, summary = [], {"meta": [], "random": [], "paper": []}
    for index, mesh in enumerate(held_out_meshes(args.generated)):
        data = sample_shape(mesh, OURS, index)
        results = {"meta": time_to_targets(meta, data, OURS), "random": time_to_targets(random, data, OURS)}
        results["paper"] = time_to_targets(
            random, paper_samples(mesh, PAPER, data.held_out, index), PAPER, cap=args.paper_cap
        )
        for key, result in results.items():
            seconds = result[min(TARGETS)][0]
            summary[key].append(result["bound"] if seconds is None else seconds)
        paper_over_meta = summary["paper"][-1] / summary["meta"][-1]
        rows.append(
            [mesh.name, f"{len(mesh.faces):,}"]
            + [cell(results[k], t) for k in ("meta", "random", "paper") for t in TARGETS]
            + [f"{'>= ' if results['paper'][min(TARGETS)][0] is None else ''}{paper_over_meta:.0f}x"]
        )
        print(rows[-1], flush=True)
    medians = {key: float(np.median(values)) for key, values in summary.items()}
    rows.append(
        [
            "**median to 0.003**",
            "",
            f"{medians['meta']:.1f} s",
            "",
            f"{medians['random']:.1f} s",
            "",
            f"{medians['paper']:.0f} s",
            "",
            f"{medians['paper'] / medians['meta']:.0f}x",
        ]
    )
    header = (
        ["held-out mesh", "faces"]
        + [f"{k} to {t}" for k in ("(a) meta family", "(b) random init", "(c) paper") for t in TARGETS]
        + ["(c) / (a) to 0.003"]
    )
    table(
        f"Seconds (incl. sampling) / steps to surface error, family {meta.family_id}; paper capped at {args.paper_cap:.0f} s of training",
        header,
        rows,
    )


if __name__ == "__main__":
    main()
