"""Benchmarks of the Warp kernels against torch baselines, in one run, printed as Markdown tables.

    .venv/bin/python bench/bench_kernels.py [--shape SHAPE.h5] [--skip-slow] [--device cpu|cuda:0]

Without ``--shape`` the default 7553-parameter net is first fitted to samples/mug.obj with the
product's own fitter (500 K samples, to the default surface error target or 4000 steps). Compared in the same run: point evaluations/s (Warp vs torch);
marching cubes at 128^3, 256^3, 512^3 (Warp dense, Warp sparse narrow band incl. its local Lipschitz
bounds, torch evaluation + scikit-image; best of ``MC_REPEATS`` runs each, the machine may be shared;
field evaluations per extraction, and whether sparse and dense gave the same triangles); 256^2 and 512^2 frames of the shape filling the view (Warp tracer vs a
plain torch sphere tracer with dynamic batching: each step evaluates only the rays still marching;
best of ``FRAME_REPEATS``, the two taking turns).
``--skip-slow`` leaves out torch + scikit-image at 512^3 (minutes on two cores).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skimage import measure

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.fitting.batched import FitSettings, fit_shapes  # noqa: E402
from backend.meshes.extraction import sdf_grid  # noqa: E402
from backend.meshes.loading import load_mesh_file  # noqa: E402
from backend.rendering.renderer import Scene, SceneObject, frame_objects, render, scene_sphere  # noqa: E402
from backend.shapes.architecture import Architecture, random_family  # noqa: E402
from backend.shapes.network import BatchedSDF, evaluate_sdf  # noqa: E402
from backend.shapes.shape_file import NeuralShape, read_shape  # noqa: E402
from kernels.device import default_device  # noqa: E402
from kernels.marching_cubes import extract_neural  # noqa: E402
from kernels.mlp_eval import evaluate, evaluate_with_gradient  # noqa: E402
from kernels.sphere_trace import TraceSettings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MC_REPEATS = 5  # marching cubes: best of this many runs (one at 512^3 for dense and the reference)
FRAME_REPEATS = 5  # frames: best of this many, Warp and torch taking turns


def timed(function, repeats: int = 1, warm_up: bool = True):
    """Best wall time of ``repeats`` calls (after one warm-up call) and the last result."""
    result = function() if warm_up else None
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def same_triangles(a, b) -> bool:
    """Whether two surface meshes have the same triangles (vertex positions, winding), whatever their order."""
    if a.faces.shape != b.faces.shape:
        return False

    def triangles(mesh):  # corners of each triangle from its smallest rotation (keeps the winding), sorted
        corners = mesh.vertices[mesh.faces].reshape(-1, 9).tolist()
        return np.array(sorted(min(row[3 * k :] + row[: 3 * k] for k in range(3)) for row in corners))

    return len(a.faces) == 0 or bool(np.abs(triangles(a) - triangles(b)).max() < 1e-6)


def quick_fit() -> NeuralShape:
    mesh = load_mesh_file(ROOT / "samples" / "mug.obj")
    family = random_family(Architecture(), 0)
    settings = FitSettings(samples=500_000, max_steps=4000)  # to the default surface error target, 0.003
    result = fit_shapes(family, [mesh], settings)[0]
    return NeuralShape(mesh.name, family.architecture, family.family_id, result.weights, mesh.transform)


def torch_trace(shape: NeuralShape, width: int, height: int, settings: TraceSettings, eps: float) -> np.ndarray:
    """The paper's design: a torch sphere tracer whose batch shrinks to the rays still marching.

    Same camera, bounding sphere start, step rule and hit test as the Warp tracer; Lambert shading from
    autograd normals. Returns the hit mask (h, w) and the shaded intensity of the hits.
    """
    camera = frame_objects([SceneObject(shape)], width, height).rays(width, height)
    j, i = np.mgrid[0:height, 0:width]
    local = np.stack(
        [(i + 0.5 - width / 2) * camera.pixel_size, (height / 2 - j - 0.5) * camera.pixel_size, -np.ones(i.shape)], -1
    ).reshape(-1, 3)
    local /= np.linalg.norm(local, axis=1, keepdims=True)
    m = camera.camera_to_world
    to_shape = shape.transform.matrix()  # world = source frame here
    origin = to_shape[:3, :3] @ m[:3, 3] + to_shape[:3, 3]
    directions = torch.from_numpy((local @ m[:3, :3].T).astype(np.float32))
    directions = directions / directions.norm(dim=1, keepdim=True)
    o = torch.from_numpy(origin.astype(np.float32))
    scale = float(shape.transform.scale)
    b = directions @ o
    disc = b * b - (o @ o - 1.0)
    t = (-b - disc.clamp(min=0).sqrt()).clamp(min=0)
    t_end = -b + disc.clamp(min=0).sqrt()
    active = torch.nonzero(disc > 0).squeeze(1)
    hit = torch.zeros(len(directions), dtype=torch.bool)
    model = BatchedSDF(shape.architecture, [shape.weights]).requires_grad_(False)
    with torch.inference_mode():
        for _ in range(settings.max_steps):
            if len(active) == 0:
                break
            f = model((o + directions[active] * t[active, None])[None])[0]
            done = f.abs() < eps * scale
            hit[active[done]] = True
            t[active] += f * settings.step_safety
            active = active[~done & (t[active] < t_end[active])]
    points = (o + directions[hit] * t[hit, None])[None].requires_grad_(True)
    BatchedSDF(shape.architecture, [shape.weights])(points).sum().backward()
    normals = torch.nn.functional.normalize(points.grad[0], dim=1)
    light = torch.tensor(settings.light_direction, dtype=torch.float32)
    intensity = settings.ambient + (1 - settings.ambient) * (normals @ (light / light.norm())).clamp(min=0)
    return hit.reshape(height, width).numpy(), intensity.detach().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=Path, help="a .h5 neural shape (default: a quick fit of samples/mug.obj)")
    parser.add_argument("--skip-slow", action="store_true", help="leave out torch + scikit-image at 512^3")
    parser.add_argument("--device", help="Warp device (default: CUDA when present)")
    args = parser.parse_args()
    device = default_device(args.device)
    torch.set_num_threads(2)
    shape = read_shape(args.shape) if args.shape else quick_fit()
    arch, weights = shape.architecture, shape.weights
    print(
        f"shape {shape.name}: {arch.describe()}, {arch.parameter_count} parameters; Warp device {device}; torch threads {torch.get_num_threads()}\n"
    )

    points = np.random.default_rng(0).uniform(-1, 1, (1_000_000, 3)).astype(np.float32)
    warp_values, _ = timed(lambda: evaluate(arch, [weights], points, device=device), 2)
    warp_gradients, _ = timed(lambda: evaluate_with_gradient(arch, [weights], points, device=device), 2)
    torch_values, _ = timed(lambda: evaluate_sdf(arch, weights, points), 2)
    torch.set_num_threads(1)
    torch_single, _ = timed(lambda: evaluate_sdf(arch, weights, points), 2)
    torch.set_num_threads(2)
    print("| point evaluations (1 M uniform points) | M points/s | vs torch |\n| --- | ---: | ---: |")
    print(f"| torch (64 K batches) | {1 / torch_values:.2f} | 1.0x |")
    print(f"| torch, one thread | {1 / torch_single:.2f} | {torch_values / torch_single:.1f}x |")
    print(f"| Warp value | {1 / warp_values:.2f} | {torch_values / warp_values:.1f}x |")
    print(f"| Warp value + analytic gradient | {1 / warp_gradients:.2f} | {torch_values / warp_gradients:.1f}x |\n")

    print(
        "| marching cubes | dense Warp | sparse Warp | torch + scikit-image | sparse vs torch + skimage | sparse vs dense | evaluations sparse / dense | faces sparse / dense, same |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for resolution in (128, 256, 512):
        repeats = 1 if resolution == 512 else MC_REPEATS
        sparse_s, sparse = timed(lambda: extract_neural(arch, weights, resolution, "sparse", device=device), MC_REPEATS)
        dense_s, dense = timed(
            lambda: extract_neural(arch, weights, resolution, "dense", device=device),
            repeats,
            warm_up=resolution == 128,
        )
        if args.skip_slow and resolution == 512:
            reference = "skipped"
            ratio = "-"
        else:
            reference_s, _ = timed(
                lambda: measure.marching_cubes(sdf_grid(arch, weights, resolution), 0.0), repeats, warm_up=False
            )
            reference, ratio = f"{reference_s:.2f} s", f"{reference_s / sparse_s:.1f}x"
        evaluations = f"{sparse.evaluations / 1e6:.2f} M / {dense.evaluations / 1e6:.1f} M"
        faces = f"{len(sparse.faces)} / {len(dense.faces)}, {'yes' if same_triangles(sparse, dense) else 'NO'}"
        print(
            f"| {resolution}^3 | {dense_s:.2f} s | {sparse_s:.2f} s | {reference} | {ratio} | {dense_s / sparse_s:.0f}x | {evaluations} | {faces} |"
        )

    print(
        "\n| frame (shape filling the view) | Warp tracer | torch tracer, dynamic batching | speed-up | coverage Warp / torch |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    plain = TraceSettings(epsilon=2e-4, ambient_occlusion=False)
    for size in (256, 512):
        scene = Scene([SceneObject(shape)], frame_objects([SceneObject(shape)], size, size), plain)
        _, radius = scene_sphere(scene.objects)  # render() takes epsilon relative to this radius
        render(scene, size, size, device), torch_trace(shape, size, size, plain, plain.epsilon * radius)  # warm-up
        warp_s = torch_s = float("inf")
        for _ in range(FRAME_REPEATS):  # alternating, so a busy spell of the machine slows both
            warp_run, result = timed(lambda: render(scene, size, size, device), warm_up=False)
            torch_run, (torch_hits, _) = timed(
                lambda: torch_trace(shape, size, size, plain, plain.epsilon * radius), warm_up=False
            )
            warp_s, torch_s = min(warp_s, warp_run), min(torch_s, torch_run)
        occlusion_s, _ = timed(lambda: render(Scene(scene.objects, scene.camera, TraceSettings()), size, size, device))
        coverage = f"{(result.object_id >= 0).mean():.2f} / {torch_hits.mean():.2f}"
        print(
            f"| {size}^2 | {warp_s:.2f} s ({occlusion_s:.2f} s with occlusion) | {torch_s:.2f} s | {torch_s / warp_s:.1f}x | {coverage} |"
        )


if __name__ == "__main__":
    main()
