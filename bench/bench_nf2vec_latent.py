"""Acceptance figures of issue #14's latent path (w(z) = theta + z B) on held-out shapes; prints markdown tables.

Inputs: an nf2vec model folder with ``latent.safetensors`` (and ``latent_encoder.safetensors`` when trained),
a canonical collection folder (``make-collection --orientation canonical``) and a folder of its meshes' fits
(NAME.h5 for NAME.ply). Held out: the manifest items ``--held-out START:STOP``; training: ``--train``.

    .venv/bin/python bench/bench_nf2vec_latent.py --model DIR --collection DIR --shapes DIR [--limit N]

Figures, all in the whole shape's normalised frame (bounding radius 0.9), medians and p90 (for F-score, the
worst decile's edge p10); Chamfer and F-score@0.01 as :func:`backend.meshes.metrics.reconstruction_quality`
against the source mesh; set-to-set distances between shapes as the Chamfer of 2,048-point clouds:
- decoding: the decoded net of (a) the encoder's z, (b) that z refined on the shape's own field, (c) z fitted to
  the source mesh's SDF samples (the subspace's ceiling), next to (d) the shape's own net;
- recognition: classify's accuracy on the encoder's z, and (``--refits DIR``) how often a held-out mesh's second-seed
  fit finds its first fit nearest in z;
- interpolation: held-out shapes i and i + n/2 (n held out; with 330 in manifest order that is a pair of one
  class), 8 in-betweens, both residual fades, z as Interpolate takes it (the encoder's);
- generation: per class, samples (``--sampler``: the prior, or the GAN on z in ``z_gan.safetensors``) at
  ``--truncation`` vs the class's held-out real shapes (1-NNA, coverage, MMD, memorisation);
- completion: held-out meshes cut as ``make-partials`` cuts them (plane and sphere cuts in turn), completed from
  the cut mesh's surface points and normals in its own normalised frame, the partial's likeliest classes competing; baselines the
  partial input (the cut mesh fitted as the collection was: the partial shape a user completes, and what the
  ratios compare with), the exact cut mesh, and the training shape nearest in z to the whole (an oracle retrieval).
Without an encoder, z comes from a fit to the shape's own field wherever the encoder's would be used.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.datasets.partials import CUTS, partial_mesh
from backend.datasets.procedural import read_manifest
from backend.errors import NeuralShapesError
from backend.fitting.batched import FitSettings, sample_shape
from backend.meshes.extraction import extract_mesh
from backend.meshes.loading import load_mesh_file
from backend.meshes.metrics import ReconstructionQuality, reconstruction_quality
from backend.nf2vec.latent import (
    LatentFamily,
    LatentFitSettings,
    RefineSettings,
    fit_latent,
    flatten,
    load_latent,
    own_field_samples,
)
from backend.nf2vec.latent_encoder import (
    ENCODER_NAME,
    LatentEncoder,
    encode_latent,
    load_latent_encoder,
    refine_latent,
)
from backend.nf2vec.model import FAMILY_NAME
from backend.nf2vec.ops.latent_ops import (
    LatentCompletionSettings,
    ZSampler,
    blend_sampler,
    class_probabilities,
    generate_latent,
    interpolate_latent,
    prior_sampler,
)
from backend.nf2vec.ops.operations import COMPLETION_CLASSES
from backend.nf2vec.tasks.z_gan import load_z_gan, z_gan_sampler
from backend.shapes.architecture import ModelFamily
from backend.shapes.family_file import read_family, resolve_family
from backend.shapes.shape_file import NeuralShape, read_shape
from bench.report import table
from bench.shapes import (
    CLOUD,
    cloud,
    cloud_chamfer,
    complete_cut,
    cut_in_shape_frame,
    fitted_cut,
    in_frame_of,
    source_in_shape_frame,
)

TABLES = ("decoding", "recognition", "interpolation", "generation", "completion")
IN_BETWEENS = 8
PAIRS = 20
PER_CLASS = 30


@dataclass
class Bench:
    """What every table reads: the latent family (its encoder when present), the base family, the shapes."""

    latent: LatentFamily
    encoder: LatentEncoder | None
    family: ModelFamily
    collection: Path
    held_out: list[tuple[NeuralShape, str]]  # (fit, class), manifest order
    train: list[tuple[NeuralShape, str]]
    limit: int | None
    resolution: int
    steps: int  # z refinement / fit steps and the completion's MAP steps
    sampler: str  # generation's z sampler as the tables name it: "prior", "gan" or the blend and its weights
    z_sampler: ZSampler
    truncation: float  # generation's truncation in [0, 1]
    completion: LatentCompletionSettings
    results: dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="nf2vec model folder holding latent.safetensors")
    parser.add_argument("--collection", type=Path, required=True, help="canonical collection folder (manifest.json)")
    parser.add_argument("--shapes", type=Path, required=True, help="folder of the collection meshes' fits, NAME.h5")
    parser.add_argument("--held-out", default="2200:2530", help="manifest item range START:STOP of the held-out shapes")
    parser.add_argument("--train", default="0:2200", help="manifest item range START:STOP of the training shapes")
    parser.add_argument("--tables", default=",".join(TABLES), help="comma-separated tables to print")
    parser.add_argument(
        "--limit", type=int, default=None, help="at most N shapes (pairs, samples per class, cuts) per table"
    )
    parser.add_argument("--resolution", type=int, default=128, help="marching-cubes grid of every decoded surface")
    parser.add_argument(
        "--steps", type=int, default=300, help="z refinement / fit steps, and the completion's MAP steps"
    )
    parser.add_argument(
        "--sampler",
        choices=("prior", "blend", "gan"),
        default="prior",
        help="generation's z sampler (blend: of two training latents; gan: z_gan.safetensors)",
    )
    parser.add_argument("--truncation", type=float, default=0.8, help="generation's truncation in [0, 1]")
    parser.add_argument(
        "--blend-low", type=float, default=0.25, help="the blend sampler's weight range [low, 1 - low], low in [0, 0.5]"
    )
    parser.add_argument(
        "--refits",
        type=Path,
        default=None,
        help="folder of second-seed fits of the held-out meshes (NAME.h5): recognition's re-fit retrieval",
    )
    parser.add_argument(
        "--ensemble-ratio",
        type=float,
        default=LatentCompletionSettings.ensemble_ratio,
        help="completion: trust the prior only where the MAP starts within this loss ratio of the best agree (0: everywhere)",
    )
    parser.add_argument(
        "--fuse-from-family",
        action="store_true",
        help="completion: start the fuse fit from the family's start instead of the partial's own net",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)  # see README: torch's second thread only waits on a busy 2-core machine
    try:
        names = [name for name in args.tables.split(",") if name]
        unknown = sorted(set(names) - set(TABLES))
        if unknown:
            raise NeuralShapesError(f"unknown table(s) {', '.join(unknown)}; choose from {', '.join(TABLES)}")
        bench = _load(args)
        runs: dict[str, Callable[[Bench], None]] = {
            "decoding": _decoding,
            "recognition": lambda b: _recognition(b, args.refits),
            "interpolation": _interpolation,
            "generation": _generation,
            "completion": _completion,
        }
        for name in names:
            runs[name](bench)
    except (NeuralShapesError, OSError, ValueError) as error:
        sys.exit(f"error: {error}".splitlines()[0])
    if args.json is not None:
        args.json.write_text(json.dumps(bench.results, indent=1) + "\n")


def _range(text: str, option: str) -> slice:
    try:
        start, stop = (int(part) for part in text.split(":"))
    except ValueError:
        raise NeuralShapesError(f"{option} wants START:STOP (manifest item indices), got '{text}'") from None
    if not 0 <= start < stop:
        raise NeuralShapesError(f"{option} {text}: need 0 <= START < STOP")
    return slice(start, stop)


def _load(args: argparse.Namespace) -> Bench:
    if args.limit is not None and args.limit < 1:
        raise NeuralShapesError(f"--limit must be at least 1, got {args.limit}")
    if args.steps < 1:
        raise NeuralShapesError(f"--steps must be at least 1, got {args.steps}")
    if not 0 <= args.truncation <= 1:
        raise NeuralShapesError(f"--truncation must be in [0, 1], got {args.truncation}")
    if not 0 <= args.blend_low <= 0.5:
        raise NeuralShapesError(f"--blend-low must be in [0, 0.5], got {args.blend_low}")
    held_range, train_range = _range(args.held_out, "--held-out"), _range(args.train, "--train")
    if held_range.start < train_range.stop and train_range.start < held_range.stop:
        raise NeuralShapesError(f"--held-out {args.held_out} overlaps --train {args.train}")
    if not args.shapes.is_dir():
        raise NeuralShapesError(f"{args.shapes}: no such folder of fitted shapes")
    latent = load_latent(args.model)
    encoder = load_latent_encoder(args.model, latent) if (args.model / ENCODER_NAME).is_file() else None
    family_file = args.model / FAMILY_NAME
    family = read_family(family_file) if family_file.is_file() else resolve_family("default", latent.architecture)
    manifest = read_manifest(args.collection)
    if manifest.orientation != "canonical":
        _progress(f"warning: the collection's orientation is '{manifest.orientation}', not canonical")

    def fitted(items: slice) -> list[tuple[NeuralShape, str]]:
        paths = [(args.shapes / f"{Path(item.file).stem}.h5", item.class_name) for item in manifest.items[items]]
        return [(read_shape(path), label) for path, label in paths if path.is_file()]

    held_out, train = fitted(held_range), fitted(train_range)
    if not held_out or not train:
        raise NeuralShapesError(
            f"{args.shapes}: no fitted shapes (NAME.h5) for the {'held-out' if not held_out else 'training'} "
            f"items of {args.collection / 'manifest.json'}"
        )
    for shape, _ in held_out + train:
        if shape.family_id != latent.family_id:
            raise NeuralShapesError(
                f"shape '{shape.name}' is of family {shape.family_id}, the latent family decodes to {latent.family_id}"
            )
    print(
        f"latent family k {latent.k} ({'with' if encoder else 'no'} latent encoder): {len(train)} training shapes, "
        f"{len(held_out)} held out; surfaces at {args.resolution}^3, {args.steps} z steps"
    )
    samplers = {
        "prior": lambda: prior_sampler(latent.prior),
        "blend": lambda: blend_sampler(latent, args.blend_low),
        "gan": lambda: z_gan_sampler(load_z_gan(args.model, latent)),
    }
    z_sampler = samplers[args.sampler]()
    return Bench(
        latent,
        encoder,
        family,
        args.collection,
        held_out,
        train,
        args.limit,
        args.resolution,
        args.steps,
        f"blend (weights in [{args.blend_low:g}, {1 - args.blend_low:g}])" if args.sampler == "blend" else args.sampler,
        z_sampler,
        args.truncation,
        LatentCompletionSettings(
            steps=args.steps,
            ensemble_ratio=args.ensemble_ratio or None,
            fuse_from_partial=not args.fuse_from_family,
        ),
        {},
    )


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _limited(bench: Bench, items: list, default: int) -> list:
    return items[: min(default, bench.limit or default)]


def _surface(bench: Bench, shape_or_weights) -> trimesh.Trimesh:
    """The zero level set in the normalised frame of a shape (or of weights of the latent family's architecture)."""
    weights = shape_or_weights.weights if isinstance(shape_or_weights, NeuralShape) else shape_or_weights
    return extract_mesh(bench.latent.architecture, weights, bench.resolution)


def _stats(values: list[float], low: bool = False) -> tuple[float, float]:
    """Median and p90 (p10 with ``low``: the bad tail of a higher-is-better figure); inf counts as worst."""
    array = np.asarray(values, dtype=np.float64)
    return float(np.median(array)), float(
        np.percentile(array, 10 if low else 90, method="higher" if not low else "lower")
    )


def _own_field_fit(bench: Bench, shapes: list[NeuralShape]) -> np.ndarray:
    """Latents (n, k) fitted to the shapes' own fields from the prior mean: z when there is no encoder."""
    flat = torch.from_numpy(np.stack([flatten(shape.weights) for shape in shapes]))
    points, sdf = own_field_samples(bench.latent.architecture, flat)
    return fit_latent(bench.latent, points, sdf, settings=LatentFitSettings(steps=bench.steps)).latents


def _encoded(bench: Bench, shapes: list[NeuralShape]) -> np.ndarray:
    """The operations' z of shapes (n, k): the encoder's, or an own-field fit without an encoder."""
    return encode_latent(bench.encoder, bench.latent, shapes) if bench.encoder else _own_field_fit(bench, shapes)


def _latents(bench: Bench, shapes: list[NeuralShape]) -> np.ndarray:
    """Refined z of shapes (n, k): encoder + refinement, or an own-field fit without an encoder."""
    if bench.encoder is None:
        return _own_field_fit(bench, shapes)
    settings = RefineSettings(fit=LatentFitSettings(steps=bench.steps))
    return refine_latent(bench.encoder, bench.latent, shapes, settings).latents


# --- decoding --------------------------------------------------------------------------------------


def _decoding(bench: Bench) -> None:
    shapes = _limited(bench, [shape for shape, _ in bench.held_out], len(bench.held_out))
    latent, labels = bench.latent, np.array([_label(bench, c) for _, c in bench.held_out[: len(shapes)]])
    ways: dict[str, Callable[[], np.ndarray]] = {}
    if bench.encoder is not None:
        ways["(a) encoder alone"] = lambda: encode_latent(bench.encoder, latent, shapes)
        ways[f"(b) encoder + {bench.steps}-step refinement"] = lambda: _latents(bench, shapes)
    ways["(c) z fitted to the source mesh's SDF samples"] = lambda: _mesh_fit(bench, shapes, labels)
    targets = {"(a)": "Chamfer <= 0.08", "(b)": "Chamfer <= 0.05, F >= 0.30"}
    sources = []
    for index, shape in enumerate(shapes):
        sources.append(source_in_shape_frame(shape, bench.collection))
        _progress(f"decoding: source {index + 1}/{len(shapes)}")
    rows, figures = [], {}
    for way, make in ways.items():
        started = time.perf_counter()
        z = make()
        seconds = (time.perf_counter() - started) / len(shapes)
        qualities = [_quality(sources[i], _surface(bench, latent.weights(z[i]))) for i in range(len(shapes))]
        rows.append(_quality_row(way, qualities, f"{seconds:.2f} s", targets.get(way[:3], "")))
        figures[way] = _quality_figures(qualities)
        _progress(f"decoding: {way} done")
    own = [_quality(sources[i], _surface(bench, shape)) for i, shape in enumerate(shapes)]
    rows.append(_quality_row("(d) the shape's own net", own, "", ""))
    figures["(d) own net"] = _quality_figures(own)
    bench.results["decoding"] = figures
    table(
        f"Decoding {len(shapes)} held-out shapes vs their source meshes (surfaces at {bench.resolution}^3)",
        ["z from", "Chamfer median", "Chamfer p90", "F-score median", "F-score p10", "time per shape", "target"],
        rows,
    )


def _recognition(bench: Bench, refits: Path | None) -> None:
    """Classify's accuracy on the held-out shapes' encoder z (the encoder's class means, as the product, and the
    auto-decoded ones), and, with ``refits``, how often a held-out mesh's second fit finds its first fit nearest
    in z among every fit (held out and training), as ``similar`` ranks."""
    if bench.encoder is None:
        raise NeuralShapesError("recognition needs the latent encoder (latent_encoder.safetensors)")
    held, train = [shape for shape, _ in bench.held_out], [shape for shape, _ in bench.train]
    z = encode_latent(bench.encoder, bench.latent, held)
    names = bench.latent.prior.class_names
    truth = np.array([names.index(class_name) for _, class_name in bench.held_out])
    rows, figures = [], {}
    for key, what, means in (
        ("encoder_means", "classify: nearest of the encoder's class means (the product's)", bench.encoder.class_means),
        ("prior_means", "classify: nearest auto-decoded class mean", None),
    ):
        if key == "encoder_means" and means is None:
            continue
        figures[key] = float(np.mean(class_probabilities(bench.latent.prior, z, means).argmax(1) == truth))
        rows.append([what, f"{figures[key]:.1%}", ">= 80%" if key == "encoder_means" else ""])
    if refits is not None:
        first = {shape.provenance.get("source_sha256"): index for index, shape in enumerate(held)}
        pairs = [
            (first[shape.provenance.get("source_sha256")], shape)
            for shape in map(read_shape, sorted(refits.glob("*.h5")))
            if shape.provenance.get("source_sha256") in first
        ]
        if not pairs:
            raise NeuralShapesError(f"{refits}: no re-fit of a held-out mesh")
        database = np.concatenate([z, encode_latent(bench.encoder, bench.latent, train)])
        query = encode_latent(bench.encoder, bench.latent, [shape for _, shape in pairs])
        own = np.array([index for index, _ in pairs])
        distances = np.linalg.norm(query[:, None, :] - database[None], axis=2)
        rank = (distances < distances[np.arange(len(own)), own][:, None]).sum(1)
        figures["refit_first"], figures["refit_median_rank"] = float(np.mean(rank == 0)), float(np.median(rank))
        rows.append(
            [
                f"a re-fit finds its first fit first among {len(database)} fits ({len(pairs)} re-fits)",
                f"{figures['refit_first']:.0%} (median rank {figures['refit_median_rank']:.0f})",
                ">= 80%",
            ]
        )
    bench.results["recognition"] = figures
    table(
        f"Recognition on the encoder's z ({len(held)} held-out shapes, {len(names)} classes)",
        ["figure", "value", "target"],
        rows,
    )


def _label(bench: Bench, class_name: str) -> int:
    """The class's row in the prior, -1 when the prior does not know it (the overall prior is used then)."""
    names = bench.latent.prior.class_names
    return names.index(class_name) if class_name in names else -1


def _mesh_fit(bench: Bench, shapes: list[NeuralShape], labels: np.ndarray) -> np.ndarray:
    """z (n, k) MAP-fitted to 32 K importance samples of each source mesh in its shape's frame (class prior when known)."""
    settings = FitSettings(samples=32_768)
    samples = [
        sample_shape(load_mesh_file(bench.collection / s.provenance["source_name"], transform=s.transform), settings, i)
        for i, s in enumerate(shapes)
    ]
    points, sdf = np.stack([s.points for s in samples]), np.stack([s.sdf for s in samples])
    known = (labels >= 0).all() and len(bench.latent.prior.class_names) > 0
    return fit_latent(
        bench.latent, points, sdf, labels=labels if known else None, settings=LatentFitSettings(steps=bench.steps)
    ).latents


def _quality(source: tuple[trimesh.Trimesh, np.ndarray], surface: trimesh.Trimesh) -> ReconstructionQuality:
    return reconstruction_quality(source[0], source[1], surface)


def _quality_row(what: str, qualities: list[ReconstructionQuality], seconds: str, target: str) -> list:
    chamfer, fscore = _stats([q.chamfer for q in qualities]), _stats([q.fscore for q in qualities], low=True)
    return [what, f"{chamfer[0]:.4f}", f"{chamfer[1]:.4f}", f"{fscore[0]:.3f}", f"{fscore[1]:.3f}", seconds, target]


def _quality_figures(qualities: list[ReconstructionQuality]) -> dict:
    chamfer, fscore = _stats([q.chamfer for q in qualities]), _stats([q.fscore for q in qualities], low=True)
    return {
        "chamfer_median": chamfer[0],
        "chamfer_p90": chamfer[1],
        "fscore_median": fscore[0],
        "fscore_p10": fscore[1],
        "chamfer": [q.chamfer for q in qualities],
        "fscore": [q.fscore for q in qualities],
    }


# --- interpolation ---------------------------------------------------------------------------------


def _interpolation(bench: Bench) -> None:
    shapes = [shape for shape, _ in bench.held_out]
    half = max(1, len(shapes) // 2)
    pairs = _limited(
        bench, [(shapes[i], shapes[(i + half) % len(shapes)]) for i in range(min(PAIRS, len(shapes)))], PAIRS
    )
    pairs = [(a, b) for a, b in pairs if a is not b]
    if not pairs:
        raise NeuralShapesError("interpolation needs at least two held-out shapes")
    ends_z = _encoded(bench, [shape for pair in pairs for shape in pair]).reshape(len(pairs), 2, -1)
    times = [0.0, *np.linspace(0.0, 1.0, IN_BETWEENS + 2)[1:-1].tolist(), 1.0]
    rows, figures = [], {}
    for fade in ("linear", "quadratic"):
        exact, non_empty, means, maxima = [], [], [], []
        for index, ((a, b), z) in enumerate(zip(pairs, ends_z)):
            shapes_t = interpolate_latent(bench.latent, a, z[0], b, z[1], times, fade=fade)
            exact.append(
                all(
                    np.array_equal(flatten(got.weights), flatten(end.weights))
                    for got, end in ((shapes_t[0], a), (shapes_t[-1], b))
                )
            )
            surfaces = [_surface(bench, shape) for shape in shapes_t]
            non_empty += [len(surface.faces) > 0 for surface in surfaces[1:-1]]
            clouds = [cloud(surface) for surface in surfaces]
            steps = [cloud_chamfer(clouds[i], clouds[i + 1]) for i in range(len(clouds) - 1)]
            means.append(float(np.mean(steps)))
            maxima.append(float(np.max(steps)))
            _progress(f"interpolation ({fade}): pair {index + 1}/{len(pairs)}")
        ratios = np.array(maxima) / np.maximum(np.array(means), 1e-12)
        figures[fade] = {
            "ends_exact": float(np.mean(exact)),
            "non_empty": float(np.mean(non_empty)),
            "mean_step": means,
            "max_step": maxima,
            "ratio": ratios.tolist(),
        }
        ratio = _stats(ratios.tolist())
        rows.append(
            [
                fade,
                f"{np.mean(exact):.0%}",
                f"{np.mean(non_empty):.0%}",
                f"{np.median(means):.4f}",
                f"{np.median(maxima):.4f}",
                f"{ratio[0]:.2f}",
                f"{ratio[1]:.2f}",
                f"{np.mean(ratios <= 2):.0%}",
            ]
        )
    bench.results["interpolation"] = figures
    table(
        f"Interpolation, {len(pairs)} held-out pairs x {IN_BETWEENS} in-betweens (z: {_z_source(bench)}, as Interpolate; surfaces at {bench.resolution}^3; "
        "targets: ends exact, every in-between non-empty, max/mean <= 2)",
        [
            "residual fade",
            "ends bit-identical",
            "in-betweens non-empty",
            "consecutive Chamfer, mean (median over pairs)",
            "consecutive, max (median)",
            "max / mean, median",
            "max / mean, p90",
            "pairs with max / mean <= 2",
        ],
        rows,
    )


def _z_source(bench: Bench) -> str:
    return "the encoder's" if bench.encoder else f"{bench.steps}-step fit to the own field, no encoder"


# --- generation ------------------------------------------------------------------------------------


def _generation(bench: Bench) -> None:
    classes = list(bench.latent.prior.class_names) or [None]
    count = min(PER_CLASS, bench.limit or PER_CLASS)
    rows, figures = [], {}
    totals: dict[str, list[float]] = {
        "nna": [],
        "coverage": [],
        "mmd": [],
        "mmd_real": [],
        "memo": [],
        "memo_real": [],
        "non_empty": [],
    }
    for index, class_name in enumerate(classes):
        held = [s for s, c in bench.held_out if class_name in (None, c)][:count]
        train = [s for s, c in bench.train if class_name in (None, c)]
        if not held or not train:
            _progress(f"generation: class {class_name}: no held-out or training shapes, skipped")
            continue
        generated = generate_latent(
            bench.latent, bench.z_sampler, count, seed=index, class_name=class_name, truncation=bench.truncation
        )
        surfaces = [_surface(bench, shape) for shape in generated]
        fake = [cloud(surface) for surface in surfaces]
        real = [cloud(source_in_shape_frame(shape, bench.collection)[0], seed=2) for shape in held]
        train_clouds = [cloud(source_in_shape_frame(shape, bench.collection)[0], seed=3) for shape in train]
        in_place = train_clouds[: len(held)]  # real shapes that are not the reference, as many as it holds
        fake_real = _distances(fake, real)
        nna = _one_nna(_distances(fake, fake), fake_real, _distances(real, real))
        coverage = len(set(fake_real.argmin(axis=1).tolist())) / len(real)
        mmd, mmd_real = float(fake_real.min(axis=0).mean()), float(_distances(in_place, real).min(axis=0).mean())
        memo, memo_real = (
            float(np.median(_distances(fake, train_clouds).min(axis=1))),
            float(np.median(_distances(real, train_clouds).min(axis=1))),
        )
        non_empty = float(np.mean([len(surface.faces) > 0 for surface in surfaces]))
        redrawn = sum(shape.provenance["draw"] != "0" for shape in generated)
        label = class_name or "all"
        figures[label] = {
            "nna": nna,
            "coverage": coverage,
            "mmd": mmd,
            "mmd_real": mmd_real,
            "memorisation": memo,
            "memorisation_real": memo_real,
            "non_empty": non_empty,
            "redrawn": redrawn,
        }
        for key, value in zip(totals, (nna, coverage, mmd, mmd_real, memo, memo_real, non_empty)):
            totals[key].append(value)
        rows.append(
            [
                label,
                f"{len(generated)} / {len(held)}",
                f"{nna:.0%}",
                f"{coverage:.0%}",
                f"{mmd:.4f}",
                f"{mmd_real:.4f}",
                f"{mmd / mmd_real:.2f}",
                f"{non_empty:.0%} ({redrawn} redrawn)",
                f"{memo:.4f} / {memo_real:.4f} = {memo / memo_real:.2f}",
            ]
        )
        _progress(f"generation: class {label} done ({index + 1}/{len(classes)})")
    if not rows:
        raise NeuralShapesError("generation: no class has both held-out and training shapes")
    mean = {key: float(np.mean(values)) for key, values in totals.items()}
    rows.append(
        [
            "mean over classes",
            "",
            f"{mean['nna']:.0%}",
            f"{mean['coverage']:.0%}",
            f"{mean['mmd']:.4f}",
            f"{mean['mmd_real']:.4f}",
            f"{mean['mmd'] / mean['mmd_real']:.2f}",
            f"{mean['non_empty']:.0%}",
            f"{mean['memo'] / mean['memo_real']:.2f}",
        ]
    )
    rows.append(["target", "30 / 30", "<= 80%", ">= 40%", "", "", "<= 1.2", ">= 95%", ">= 0.8"])
    bench.results["generation"] = figures
    table(
        f"Generation: {bench.sampler} samples (truncation {bench.truncation:g}) vs each class's held-out real shapes (Chamfer of {CLOUD}-point "
        f"clouds; real in their place: the class's first training shapes; surfaces at {bench.resolution}^3)",
        [
            "class",
            "generated / real",
            "1-NNA",
            "coverage",
            "MMD",
            "MMD, real in their place",
            "MMD ratio",
            "non-empty",
            "memorisation: median to nearest training shape, generated / real = ratio",
        ],
        rows,
    )


def _distances(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    """Cloud Chamfer (len a, len b) between every pair."""
    return np.array([[cloud_chamfer(x, y) for y in b] for x in a]).reshape(len(a), len(b))


def _one_nna(fake_fake: np.ndarray, fake_real: np.ndarray, real_real: np.ndarray) -> float:
    """1-nearest-neighbour accuracy of telling generated from real in their union (50% best, 100% worst)."""
    full = np.block([[fake_fake, fake_real], [fake_real.T, real_real]])
    np.fill_diagonal(full, np.inf)
    is_fake = np.arange(len(full)) < len(fake_fake)
    return float(np.mean(is_fake[full.argmin(axis=1)] == is_fake))


# --- completion ------------------------------------------------------------------------------------


def _completion(bench: Bench) -> None:
    held = _limited(bench, bench.held_out, len(bench.held_out))
    nearest = _nearest_training(bench, [shape for shape, _ in held])
    settings = bench.completion
    results: dict[str, list[ReconstructionQuality]] = {"partial": [], "fitted": [], "completed": [], "nearest": []}
    fell_back, seconds, chosen, among = [], [], [], []
    for index, ((whole, class_name), near) in enumerate(zip(held, nearest)):
        source = source_in_shape_frame(whole, bench.collection)
        cut = partial_mesh(*cut_in_shape_frame(whole, bench.collection, index))
        partial = fitted_cut(bench.family, cut, index)
        fitted_surface = extract_mesh(
            partial.architecture, partial.weights, bench.resolution, transform=partial.transform
        )
        candidates = _likeliest_classes(bench, partial)
        completed, report = complete_cut(
            bench.latent, bench.family, whole, cut, candidates, settings, partial, seed=index
        )
        fitted_quality = _quality(source, fitted_surface)
        chosen.append(completed.provenance["class"] == class_name)
        among.append(class_name in candidates)
        results["partial"].append(_quality(source, cut))
        results["fitted"].append(fitted_quality)
        results["completed"].append(
            fitted_quality if report.fell_back else _quality(source, in_frame_of(whole, completed, bench.resolution))
        )
        results["nearest"].append(_quality(source, _surface(bench, near)))
        fell_back.append(report.fell_back)
        seconds.append(report.seconds)
        _progress(
            f"completion: cut {index + 1}/{len(held)} ({CUTS[index % 2]}), {report.seconds:.1f} s"
            f"{', fell back' if report.fell_back else ''}"
        )
    ratios = np.array([c.chamfer / p.chamfer for c, p in zip(results["completed"], results["fitted"])])
    mesh_ratios = np.array([c.chamfer / p.chamfer for c, p in zip(results["completed"], results["partial"])])
    rows = [
        _quality_row(what, results[key], "", "")[:5]
        for key, what in (
            ("fitted", "the partial input (the cut mesh fitted, as a user's partial shape is)"),
            ("partial", "the cut mesh itself (exact surface)"),
            ("nearest", "nearest training shape (encoder z of the whole)"),
            ("completed", "completed (MAP + fuse fit)"),
        )
    ]
    figures = {key: _quality_figures(value) for key, value in results.items()}
    figures |= {
        "closer": float(np.mean(ratios < 1)),
        "ratio": ratios.tolist(),
        "mesh_ratio": mesh_ratios.tolist(),
        "fell_back": int(np.sum(fell_back)),
        "class_among": float(np.mean(among)),
        "class_kept": float(np.mean(chosen)),
        "seconds": seconds,
    }
    bench.results["completion"] = figures
    table(
        f"Completion of {len(held)} held-out cut shapes (plane and sphere cuts as make-partials) vs their whole meshes "
        f"({settings.yaw_starts} yaw starts, {settings.steps} MAP steps, class prior; surfaces at {bench.resolution}^3)",
        ["shape", "Chamfer median", "Chamfer p90", "F-score median", "F-score p10"],
        rows,
    )
    table(
        "Completion against its input (the fitted partial; on a fallback the completion is the input)",
        ["figure", "value", "target"],
        [
            ["completed closer to the whole than the partial input", f"{np.mean(ratios < 1):.0%}", ">= 80%"],
            ["Chamfer ratio completed / partial input, median", f"{np.median(ratios):.2f}", "<= 0.75"],
            ["worst ratio", f"{np.max(ratios):.2f}", "<= 1.10"],
            ["completed closer than the exact cut mesh", f"{np.mean(mesh_ratios < 1):.0%}", ""],
            ["Chamfer ratio completed / cut mesh, median", f"{np.median(mesh_ratios):.2f}", ""],
            ["fell back to the partial", f"{int(np.sum(fell_back))} of {len(held)}", ""],
            [
                f"true class among the partial's {COMPLETION_CLASSES} likeliest / kept by the MAP",
                f"{np.mean(among):.0%} / {np.mean(chosen):.0%}",
                "",
            ],
            ["seconds per completion, median", f"{np.median(seconds):.1f}", "<= 15"],
        ],
    )


def _likeliest_classes(bench: Bench, partial: NeuralShape) -> list[str]:
    """The completion's candidate classes as the product picks them (:func:`backend.nf2vec.ops.operations.complete`):
    the partial's likeliest classes by its encoder z (by a z fitted to its own field without an encoder)."""
    z = encode_latent(bench.encoder, bench.latent, [partial]) if bench.encoder else _own_field_fit(bench, [partial])
    [probabilities] = class_probabilities(bench.latent.prior, z, bench.encoder.class_means if bench.encoder else None)
    return [bench.latent.prior.class_names[i] for i in np.argsort(-probabilities)[:COMPLETION_CLASSES]]


def _nearest_training(bench: Bench, shapes: list[NeuralShape]) -> list[NeuralShape]:
    """Each shape's training shape of nearest z (the baseline of retrieval that knew the whole shape)."""
    train = [shape for shape, _ in bench.train]
    _progress(f"completion: latents of {len(train)} training shapes")
    encode = (
        (lambda s: encode_latent(bench.encoder, bench.latent, s))
        if bench.encoder
        else (lambda s: _own_field_fit(bench, s))
    )
    train_z, query_z = encode(train), encode(shapes)
    nearest = np.linalg.norm(query_z[:, None, :] - train_z[None, :, :], axis=2).argmin(axis=1)
    return [train[i] for i in nearest]


if __name__ == "__main__":
    main()
