"""Pictures of issue #14's latent path for docs/ and the README, sphere-traced by the project's own renderer.

    .venv/bin/python bench/nf2vec_pictures.py --model DIR --collection DIR --shapes DIR -o docs/images [--size 160]

Writes three PNGs into the output folder and prints a markdown snippet (image links and captions) for the README:
- generated.png: one row per class of the latent prior, generated shapes decoded from sampled z (``--sampler``:
  the GAN on z when the model folder has ``z_gan.safetensors``, else the Gaussian prior);
- interpolation.png: strips between held-out shapes of two classes, z from the latent encoder + refinement,
  both ends the shapes' own nets;
- completion.png: held-out meshes cut as ``make-partials`` cuts them (plane and sphere cuts in turn), as
  partial input / completed / truth, with each completion's Chamfer to the whole next to its input's.

Held out: items 2200-2529 of the collection's manifest (bench_nf2vec_latent.py's default), fits NAME.h5 in
``--shapes``. Every tile shows a shape in its own normalised frame (bounding radius 0.9; the completion rows
in the whole's) from one fixed 3/4 camera framing that sphere, lit as ``neural-shapes render`` lights. The
partial input is the truth's render with the pixels whose nearest source-mesh face the cut removed drawn as a
faint grey ghost. Everything is seeded: the same model and data give the same pictures.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.datasets.partials import partial_mesh
from backend.datasets.procedural import read_manifest
from backend.errors import NeuralShapesError
from backend.meshes.metrics import reconstruction_quality, surface_samples
from backend.nf2vec.latent import LatentFamily, load_latent
from backend.nf2vec.latent_encoder import LatentEncoder, encode_latent, load_latent_encoder
from backend.nf2vec.model import FAMILY_NAME
from backend.nf2vec.ops.latent_ops import (
    LatentCompletionSettings,
    ZSampler,
    blend_sampler,
    generate_latent,
    interpolate_latent,
    prior_sampler,
)
from backend.nf2vec.ops.operations import DEFAULT_TRUNCATION
from backend.nf2vec.ops.tools import model_z_sampler
from backend.rendering.renderer import write_png
from backend.shapes.architecture import ModelFamily
from backend.shapes.family_file import read_family, resolve_family
from backend.shapes.shape_file import NeuralShape, read_shape
from bench.pictures import render_tile, sheet
from bench.shapes import complete_cut, cut_in_shape_frame, fitted_cut, in_frame_of

HELD_OUT = slice(2200, 2530)
PER_ROW = 6  # generated shapes per class
TRUNCATION = DEFAULT_TRUNCATION  # as Generate samples by default
PAIRS = (("chair", "table"), ("airplane", "rocket"), ("vase", "mug"), ("blob", "organic"))  # interpolation strips
STEPS = 8  # tiles per strip, both ends included
COMPLETIONS = ("chair", "airplane", "mug", "car", "lamp", "table")  # one cut shape each, plane and sphere cuts in turn
GHOST = 0.2  # opacity of what a cut removed, drawn in grey on the partial input


@dataclass
class Pictures:
    """What the pictures read: the latent family and encoder, the base family (for completion), held-out fits by class."""

    latent: LatentFamily
    load_encoder: Callable[[], LatentEncoder]  # on first use: only the interpolation needs it
    family: ModelFamily
    collection: Path
    held_out: dict[str, list[NeuralShape]]  # class -> fits, manifest order


# --- tiles -----------------------------------------------------------------------------------------


def cut_away(rgba: np.ndarray, points: np.ndarray, whole: trimesh.Trimesh, kept: np.ndarray) -> np.ndarray:
    """``rgba`` with every pixel whose hit point's nearest surface point of ``whole`` lies on a face the cut removed
    turned into a faint grey ghost; ``kept`` (faces,) bool. Points in ``whole``'s frame."""
    samples, faces = trimesh.sample.sample_surface(whole, 200_000, seed=0)
    hit = np.isfinite(points[..., 0])
    removed = np.zeros(hit.shape, dtype=bool)
    removed[hit] = ~kept[faces[cKDTree(samples).query(points[hit])[1]]]
    out = rgba.copy()
    out[removed, :3] = out[removed, :3].mean(axis=1, keepdims=True)
    out[removed, 3] = GHOST
    return out


# --- the three pictures ----------------------------------------------------------------------------


def generated_sheet(
    latent: LatentFamily,
    sampler: ZSampler,
    size: int,
    per_row: int = PER_ROW,
    truncation: float = TRUNCATION,
    classes: list[str] | None = None,
) -> np.ndarray:
    """One row per class (default: the prior's, or one unlabelled row without classes) of ``per_row`` generated shapes,
    seeded by the row index; an opaque linear RGBA image."""
    classes = classes if classes is not None else list(latent.prior.class_names) or [None]
    rows = [
        [
            render_tile(shape, size)[0]
            for shape in generate_latent(latent, sampler, per_row, seed=i, class_name=name, truncation=truncation)
        ]
        for i, name in enumerate(classes)
    ]
    return sheet(rows, [name or "" for name in classes], size)


def interpolation_sheet(pictures: Pictures, size: int) -> np.ndarray:
    """One strip of ``STEPS`` tiles per class pair of ``PAIRS`` (the first held-out shape of each class), as
    Interpolate makes them: the encoder's z, the quadratic residual fade."""
    ends = [(_held(pictures, a)[0], _held(pictures, b)[0]) for a, b in PAIRS]
    shapes = [shape for pair in ends for shape in pair]
    z = encode_latent(pictures.load_encoder(), pictures.latent, shapes).reshape(len(ends), 2, -1)
    times = np.linspace(0.0, 1.0, STEPS).tolist()
    rows = []
    for (a, b), (z_a, z_b) in zip(ends, z):
        rows.append(
            [
                render_tile(shape, size)[0]
                for shape in interpolate_latent(pictures.latent, a, z_a, b, z_b, times, fade="quadratic")
            ]
        )
        _progress(f"interpolation: {a.name} -> {b.name}")
    return sheet(rows, [f"{a} -> {b}" for a, b in PAIRS], size)


def completion_sheet(pictures: Pictures, size: int) -> tuple[np.ndarray, list[str]]:
    """Rows of partial input / completed / truth for the first held-out shape of each class of ``COMPLETIONS``, and
    each row's caption: class, cut, Chamfer to the whole of the partial and of the completion (or its fallback)."""
    settings = LatentCompletionSettings()
    rows, labels, captions = [], [], []
    for index, class_name in enumerate(COMPLETIONS):
        whole = _held(pictures, class_name)[0]
        mesh, kept = cut_in_shape_frame(whole, pictures.collection, index)
        cut = partial_mesh(mesh, kept)
        fitted = fitted_cut(pictures.family, cut, index)
        completed, report = complete_cut(
            pictures.latent, pictures.family, whole, cut, [class_name], settings, fitted, seed=index
        )
        truth, points = render_tile(whole, size)
        partial = cut_away(truth, points, mesh, kept)
        reference = surface_samples(mesh.vertices, mesh.faces, 20_000, seed=1)
        partial_chamfer = reconstruction_quality(mesh, reference, cut).chamfer
        if report.fell_back:
            done, chamfer = partial, partial_chamfer
        else:
            done = render_tile(completed, size, frame=whole)[0]
            chamfer = reconstruction_quality(mesh, reference, in_frame_of(whole, completed)).chamfer
        rows.append([partial, done, truth])
        kind = "plane" if index % 2 == 0 else "sphere"
        labels.append(f"{class_name}, {kind} cut")
        captions.append(
            f"{class_name} ({kind} cut) {partial_chamfer:.3f} \u2192 {chamfer:.3f}{' (fell back)' if report.fell_back else ''}"
        )
        _progress(f"completion: {whole.name}, {report.seconds:.1f} s{', fell back' if report.fell_back else ''}")
    return sheet(rows, labels, size, titles=["partial input", "completed", "truth"]), captions


def _held(pictures: Pictures, class_name: str) -> list[NeuralShape]:
    if not pictures.held_out.get(class_name):
        raise NeuralShapesError(
            f"no held-out fit of class '{class_name}' in the shapes folder (manifest items "
            f"{HELD_OUT.start}-{HELD_OUT.stop - 1})"
        )
    return pictures.held_out[class_name]


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the command -----------------------------------------------------------------------------------


def z_sampler(model: Path, latent: LatentFamily, choice: str) -> tuple[ZSampler, str]:
    """The generation sampler and its name: ``gan`` the GAN on z in ``model/z_gan.safetensors``, ``prior`` the
    Gaussian prior, ``blend`` blends of two training latents, ``auto`` what Generate uses for the folder
    (:func:`backend.nf2vec.ops.tools.model_z_sampler`)."""
    from backend.nf2vec.tasks import z_gan  # lazily: only a model with a GAN needs it

    if choice == "auto":
        return model_z_sampler(model, latent), "default"
    if choice == "prior":
        return prior_sampler(latent.prior), "prior"
    if choice == "blend":
        return blend_sampler(latent), "blend"
    return z_gan.z_gan_sampler(z_gan.load_z_gan(model, latent)), "GAN"


def _load(args: argparse.Namespace) -> Pictures:
    if not 16 <= args.size <= 1024:
        raise NeuralShapesError(f"--size must be 16-1024 pixels, got {args.size}")
    if not args.shapes.is_dir():
        raise NeuralShapesError(f"{args.shapes}: no such folder of fitted shapes")
    latent = load_latent(args.model)
    family_file = args.model / FAMILY_NAME
    family = read_family(family_file) if family_file.is_file() else resolve_family("default", latent.architecture)
    held_out: dict[str, list[NeuralShape]] = {}
    for item in read_manifest(args.collection).items[HELD_OUT]:
        path = args.shapes / f"{Path(item.file).stem}.h5"
        if path.is_file():
            held_out.setdefault(item.class_name, []).append(read_shape(path))
    return Pictures(latent, lambda: load_latent_encoder(args.model, latent), family, args.collection, held_out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, required=True, help="nf2vec model folder (latent.safetensors, latent_encoder.safetensors)"
    )
    parser.add_argument("--collection", type=Path, required=True, help="canonical collection folder (manifest.json)")
    parser.add_argument("--shapes", type=Path, required=True, help="folder of the collection meshes' fits, NAME.h5")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder to write the PNGs into")
    parser.add_argument("--size", type=int, default=160, help="tile side in pixels")
    parser.add_argument(
        "--sampler",
        choices=("auto", "prior", "blend", "gan"),
        default="auto",
        help="generation's z sampler (auto: what Generate uses for the model folder)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)  # see README: torch's second thread only waits on a busy 2-core machine
    try:
        pictures = _load(args)
        sampler, sampler_name = z_sampler(args.model, pictures.latent, args.sampler)
        args.output.mkdir(parents=True, exist_ok=True)
        write_png(generated_sheet(pictures.latent, sampler, args.size), args.output / "generated.png")
        _progress("generated.png written")
        write_png(interpolation_sheet(pictures, args.size), args.output / "interpolation.png")
        completion, captions = completion_sheet(pictures, args.size)
        write_png(completion, args.output / "completion.png")
    except (NeuralShapesError, OSError, ValueError) as error:
        sys.exit(f"error: {error}".splitlines()[0])
    folder = args.output.as_posix()
    print(
        f"![Generated shapes, one row per class]({folder}/generated.png)\n\n"
        f"*Generate: {PER_ROW} shapes per class, z from the {sampler_name} sampler at truncation {TRUNCATION:g}, "
        "decoded with no refit (held-out data never seen).*\n\n"
        f"![Interpolation strips]({folder}/interpolation.png)\n\n"
        f"*Interpolate: {len(PAIRS)} pairs of held-out shapes of two classes, {STEPS} steps in z with each end's residual "
        "faded in quadratically, so both ends are the shapes' own nets.*\n\n"
        f"![Completion: partial input, completed, truth]({folder}/completion.png)\n\n"
        "*Complete: held-out meshes cut as make-partials cuts them (grey: what the cut removed); Chamfer to the whole, partial \u2192 completed: "
        f"{'; '.join(captions)}.*"
    )


if __name__ == "__main__":
    main()
