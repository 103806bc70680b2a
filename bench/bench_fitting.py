"""Benchmarks of the fitting core; prints tables (markdown) for the README.

    .venv/bin/python bench/bench_fitting.py [--quick]

1. Signed-distance queries per second on a ~50 K-face mesh, near-surface and uniform points, per sign method.
2. 1 M importance samples on that mesh: our exact rejection sampler vs the paper's pool resampling
   (measured on a 1 M pool; the paper's 10 M pool costs 10x that).
3. Fit of each bundled sample with the default net to surface error 0.003: seconds, steps, final figures.
4. Batched vs one-by-one: 16 shapes, the same samples and steps, training time and end-to-end ratio.
Absolute times are noisy on a shared 2-core machine; the ratios in one run are what to compare.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import trimesh
from report import table
from shapes import varied_meshes

from backend.fitting.batched import FitSettings, fit_shapes, sample_shape, sign_method_for, train_shapes
from backend.meshes.loading import find_mesh_files, load_mesh_file, normalise_mesh
from backend.meshes.metrics import surface_error, surface_samples
from backend.meshes.sampling import importance_samples
from backend.shapes.architecture import random_family
from kernels.mesh_sdf import MeshDistance, SignMethod

ROOT = Path(__file__).resolve().parents[1]


def bench_mesh() -> trimesh.Trimesh:
    """A clean bumpy torus with 51,200 faces (the paper's real meshes go to 52 K)."""
    torus = trimesh.creation.torus(0.6, 0.25, major_sections=320, minor_sections=80)
    v = torus.vertices
    bumps = 0.03 * np.sin(9 * np.arctan2(v[:, 1], v[:, 0])) * np.cos(5 * v[:, 2] / 0.25)
    return trimesh.Trimesh(v + torus.vertex_normals * bumps[:, None], torus.faces)


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def bench_distance(mesh: trimesh.Trimesh, n: int) -> None:
    normalised = normalise_mesh(mesh.vertices, mesh.faces, name="bench")
    distance = MeshDistance(normalised.vertices, normalised.faces, device="cpu")
    rng = np.random.default_rng(1)
    near = surface_samples(normalised.vertices, normalised.faces, n, seed=2) + rng.laplace(
        scale=1 / 60, size=(n, 3)
    ).astype(np.float32)
    uniform = rng.uniform(-1, 1, size=(n, 3)).astype(np.float32)
    distance.distance(near[:1000], SignMethod.WINDING_NUMBER)  # compile
    rows = []
    for sign in SignMethod:
        row = [sign.name.lower()]
        for points in (near, uniform):
            seconds, _ = timed(lambda: distance.distance(points, sign), repeat=2)
            row.append(f"{n / seconds / 1e3:,.0f} K/s")
        rows.append(row)
    table(
        f"Signed distance, {len(mesh.faces):,}-face mesh, {n:,} points, all cores",
        ["sign", "near surface (beta 60)", "uniform in cube"],
        rows,
    )

    rows = []
    for label, sign in (
        ("clean mesh: pseudo normal", SignMethod.PSEUDO_NORMAL),
        ("messy mesh: winding number", SignMethod.WINDING_NUMBER),
    ):
        ours, _ = timed(lambda: importance_samples(distance, 1_000_000, sign=sign), repeat=1)
        pool = rng.uniform(-1, 1, size=(1_000_000, 3)).astype(np.float32)
        paper, _ = timed(lambda: distance.distance(pool, sign))
        rows.append(
            [label, f"{ours:.2f} s", f"{paper:.2f} s (10 M pool: ~{10 * paper:.0f} s)", f"{10 * paper / ours:.0f}x"]
        )
    table(
        "1 M importance samples (beta 60, 1/16 uniform)",
        ["case", "ours (exact rejection)", "paper (pool resampling)", "speed-up vs 10 M pool"],
        rows,
    )


def bench_samples() -> None:
    family = random_family()
    rows = []
    for path in find_mesh_files([ROOT / "samples"]):
        mesh = load_mesh_file(path)
        [result] = fit_shapes(family, [mesh], FitSettings())
        error = surface_error(
            family.architecture, result.weights, surface_samples(mesh.vertices, mesh.faces, 100_000, seed=1)
        )
        rows.append(
            [
                path.name,
                f"{len(mesh.faces):,}",
                sign_method_for(mesh).name.lower(),
                f"{result.fit_seconds:.1f}",
                result.steps,
                f"{error:.4f}",
                result.stop_reason,
            ]
        )
    seconds = sorted(float(r[3]) for r in rows)
    table(
        f"Fit to surface error 0.003, default net, one shape at a time (median {np.median(seconds):.1f} s)",
        [
            "sample",
            "faces",
            "sign",
            "seconds (incl. sampling)",
            "steps",
            "surface error (100 K fresh points)",
            "stopped",
        ],
        rows,
    )


def bench_batching(count: int, steps: int) -> None:
    """Training throughput on the same samples, then end to end (sampling is per shape either way)."""
    family = random_family()
    settings = FitSettings(samples=200_000, max_steps=steps, target_surface_error=0.0)
    sampling, data = timed(
        lambda: [
            sample_shape(normalise_mesh(m.vertices, m.faces, name=f"s{i}"), settings, i)
            for i, m in enumerate(varied_meshes(count))
        ]
    )
    rows = []
    for per_shape in (2048, 16384):
        run = replace(settings, batch_size=per_shape)
        batched, _ = timed(lambda: train_shapes(family, data, run))
        single = sum(timed(lambda d=d: train_shapes(family, [d], run))[0] for d in data)
        rows.append(
            [
                f"{per_shape:,}",
                f"{single:.1f}",
                f"{batched:.1f}",
                f"{single / batched:.1f}x",
                f"{(sampling + single) / (sampling + batched):.1f}x",
            ]
        )
    table(
        f"Batched vs one-by-one: {count} shapes, {steps} steps each (torch threads: {torch.get_num_threads()}; "
        f"sampling {sampling:.1f} s for all, the same either way)",
        [
            "points per shape per step",
            "one by one: training s",
            "batched: training s",
            "training throughput",
            "end to end",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (smoke test of the script)")
    args = parser.parse_args()
    mesh = bench_mesh()
    bench_distance(mesh, 50_000 if args.quick else 200_000)
    if not args.quick:
        bench_samples()
    bench_batching(4 if args.quick else 16, 50 if args.quick else 300)


if __name__ == "__main__":
    main()
