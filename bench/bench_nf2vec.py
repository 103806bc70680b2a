"""nf2vec quality and speed on held-out shapes of the procedural classes; prints the README's tables.

Data as ``scripts/train_default_nf2vec`` makes it: the collection (out/collection), its first
``--train + --test`` meshes fitted with the default family (out/collection-shapes), the model trained on
the first ``--train`` (manifest order cycles through the classes, so every split is class-balanced), and
fitted partial meshes (out/partial-shapes, cut by make-partials into out/partials). Held out: the next
``--test`` meshes, and the partials of those meshes.

    .venv/bin/python bench/bench_nf2vec.py [--model DIR] [--per-class 2]

Figures (normalised units: bounding radius 0.9; Chamfer as backend.meshes.metrics defines it):
- decoding: the decoded surface (96^3) of a held-out shape's embedding vs its source mesh, by nf2vec's
  implicit decoder and by the neighbour decoder, next to the shape's own reconstruction (its net, 128^3);
- classification accuracy and retrieval mAP@k (test shapes query the training shapes; relevant = same class);
- similar on re-fits: a second fit (another seed) of a held-out mesh should find the first fit first;
- interpolation smoothness: Chamfer between consecutive in-betweens (8 steps per pair) vs between the ends;
- generation: coverage and MMD (Chamfer) of GAN samples against the training shapes, with held-out real
  shapes in place of the samples as the reference point;
- completion: Chamfer to the complete mesh of the partial shape before and of the completed shape after;
- times: embedding per shape, and each operation end to end at 128^3 (what a Blender operator waits for).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import trimesh

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.errors import NeuralShapesError
from backend.fitting.batched import FitSettings, fit_shapes
from backend.fitting.pipeline import fitted_shape
from backend.meshes.extraction import extract_mesh
from backend.meshes.loading import load_mesh_file
from backend.meshes.metrics import reconstruction_quality
from backend.nf2vec.decoding import DecodeSettings, decoded_surface
from backend.nf2vec.embedding import embed, similar
from backend.nf2vec.ops.classification import classify
from backend.nf2vec.ops.completion import complete
from backend.nf2vec.ops.generation import generate
from backend.nf2vec.ops.interpolation import interpolate
from backend.nf2vec.ops.tools import load_tools
from backend.nf2vec.tasks.classifier import load_classifier
from backend.nf2vec.tasks.latent_gan import load_gan
from backend.shapes.shape_file import read_shape
from bench.report import table
from bench.shapes import cloud, cloud_chamfer, in_frame_of, source_in_shape_frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--collection", type=Path, default=Path("out/collection"))
    parser.add_argument("--shapes", type=Path, default=Path("out/collection-shapes"))
    parser.add_argument("--partials", type=Path, default=Path("out/partials"))
    parser.add_argument("--partial-shapes", type=Path, default=Path("out/partial-shapes/test"))
    parser.add_argument("--train", type=int, default=330)
    parser.add_argument("--test", type=int, default=110)
    parser.add_argument("--per-class", type=int, default=2, help="held-out shapes per class for the slow figures")
    parser.add_argument(
        "--tables",
        default="decoding,recognition,refits,interpolation,generation,completion,times",
        help="comma-separated tables to print",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)  # see README: torch's second thread only waits on a busy 2-core machine

    tools = load_tools(args.model)
    items = json.loads((args.collection / "manifest.json").read_text())["items"]
    by_source = {shape.provenance["source_name"]: shape for shape in map(read_shape, sorted(args.shapes.glob("*.h5")))}
    train = [(by_source[i["file"]], i["class"]) for i in items[: args.train] if i["file"] in by_source]
    test = [
        (by_source[i["file"]], i["class"]) for i in items[args.train : args.train + args.test] if i["file"] in by_source
    ]
    slow = _per_class(test, args.per_class)
    print(
        f"model {tools.model.model_id}: {len(train)} training shapes, {len(test)} held out ({len(slow)} for the slow figures)"
    )

    tables = {
        "decoding": lambda: _decoder_table(tools, slow, args.collection),
        "recognition": lambda: _recognition_table(tools, train, test),
        "refits": lambda: _refit_table(tools, train, test, slow, args.collection),
        "interpolation": lambda: _interpolation_table(tools, slow),
        "generation": lambda: _generation_table(tools, train, test, args.collection),
        "completion": lambda: _completion_table(tools, args, test),
        "times": lambda: _timing_table(tools, slow, _embedding_times(tools, [s for s, _ in test])),
    }
    for name in args.tables.split(","):
        tables[name]()


def _per_class(shapes: list, count: int) -> list:
    picked, seen = [], {}
    for shape, label in shapes:
        if seen.get(label, 0) < count:
            picked.append((shape, label))
            seen[label] = seen.get(label, 0) + 1
    return picked


def _embedding_times(tools, shapes) -> dict[str, float]:
    single = []
    for shape in shapes[:50]:
        started = time.perf_counter()
        embed(tools.model, [shape])
        single.append(time.perf_counter() - started)
    started = time.perf_counter()
    embed(tools.model, shapes)
    return {"one": float(np.median(single)) * 1e3, "batched": (time.perf_counter() - started) / len(shapes) * 1e3}


def _decoder_table(tools, shapes, collection: Path) -> None:
    """Held-out shapes are no anchors: the neighbour decoder rebuilds them from the training shapes."""
    results = {"implicit": [], "neighbours": [], "own": []}
    codes = embed(tools.model, [s for s, _ in shapes])
    for (shape, _), code in zip(shapes, codes):
        mesh, points = source_in_shape_frame(shape, collection)
        for decoder, min_body in (("implicit", 0.1), ("neighbours", 0.0)):
            surface = _decoded_or_empty(tools, code, DecodeSettings(decoder=decoder, min_body_fraction=min_body))
            results[decoder].append(reconstruction_quality(mesh, points, surface))
        results["own"].append(
            reconstruction_quality(mesh, points, extract_mesh(shape.architecture, shape.weights, 128))
        )
    labels = {
        "implicit": "nf2vec implicit decoder (96^3, bodies < 10% dropped)",
        "neighbours": "neighbour decoder (96^3)",
        "own": "the shape's own net (128^3)",
    }
    rows = [
        [labels[key], f"{np.median([q.chamfer for q in qs]):.4f}", f"{np.median([q.fscore for q in qs]):.3f}"]
        for key, qs in results.items()
    ]
    table(
        f"Decoding the embeddings of {len(shapes)} held-out shapes vs their source meshes (medians)",
        ["surface", "Chamfer", "F-score"],
        rows,
    )


def _decoded_or_empty(tools, code: np.ndarray, settings: DecodeSettings, anchors=()) -> trimesh.Trimesh:
    """The decoded surface, or an empty mesh where the field has none (scored as Chamfer inf, F-score 0)."""
    try:
        return decoded_surface(tools, code, "decoded", settings, anchors).trimesh()
    except NeuralShapesError:
        return trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))


def _recognition_table(tools, train, test) -> None:
    train_codes, test_codes = embed(tools.model, [s for s, _ in train]), embed(tools.model, [s for s, _ in test])
    train_labels, test_labels = np.array([c for _, c in train]), np.array([c for _, c in test])
    classifier = load_classifier(tools.folder, tools.model)
    predicted = np.array(classifier.class_names)[classifier.predict(test_codes).argmax(axis=1)]
    accuracy = float((predicted == test_labels).mean())
    distances = np.linalg.norm(test_codes[:, None, :] - train_codes[None, :, :], axis=2)
    ranked = train_labels[np.argsort(distances, axis=1, kind="stable")]
    relevant = ranked == test_labels[:, None]
    rows = [["classification accuracy", f"{accuracy:.1%}"]]
    for k in (1, 5, 10):
        hits = relevant[:, :k]
        precision_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
        average = np.where(hits.any(axis=1), (precision_at * hits).sum(axis=1) / np.maximum(hits.sum(axis=1), 1), 0.0)
        rows.append([f"retrieval mAP@{k}", f"{average.mean():.3f}"])
    rows.append(["chance (most frequent class)", f"{max(np.mean(test_labels == c) for c in set(test_labels)):.1%}"])
    table(
        f"Recognition on {len(test)} held-out shapes ({len(train)} training shapes as the retrieval database)",
        ["figure", "value"],
        rows,
    )


def _refit_table(tools, train, test, shapes, collection: Path) -> None:
    """similar() on a second fit (another seed) of a held-out mesh: is the first fit its nearest shape?"""
    meshes = [load_mesh_file(collection / shape.provenance["source_name"]) for shape, _ in shapes]
    results = fit_shapes(tools.family, meshes, FitSettings(samples=32_768, max_steps=1000, seed=11))
    library = [s for s, _ in train + test]
    ranks = []
    for (shape, _), mesh, result in zip(shapes, meshes, results):
        refit = fitted_shape(mesh, result, tools.family, source_name=mesh.name)
        order = [library[n.index] for n in similar(tools.model, refit, library, len(library))]
        ranks.append(order.index(shape) + 1)
    rows = [
        ["first fit ranked first", f"{np.mean(np.array(ranks) == 1):.0%}"],
        ["median rank of the first fit", f"{np.median(ranks):.0f}"],
    ]
    table(
        f"Similar: {len(shapes)} held-out meshes fitted again (another seed), searched among {len(library)} shapes",
        ["figure", "value"],
        rows,
    )


def _interpolation_table(tools, shapes) -> None:
    pairs = [
        (shapes[i][0], shapes[(i + len(shapes) // 2) % len(shapes)][0])
        for i in range(0, len(shapes), max(1, len(shapes) // 5))
    ][:5]
    times = np.linspace(0.0, 1.0, 8)
    rows = []
    for space in ("embedding", "weights"):
        steps, ends, closed = [], [], []
        for a, b in pairs:
            if space == "embedding":
                codes = embed(tools.model, [a, b])
                anchors = [(codes[0], a.weights), (codes[1], b.weights)]
                meshes = [
                    _decoded_or_empty(tools, (1 - t) * codes[0] + t * codes[1], DecodeSettings(), anchors)
                    for t in times
                ]
            else:
                meshes = [
                    extract_mesh(s.architecture, s.weights, 64)
                    for s in interpolate(tools, a, b, list(times), space="weights")
                ]
            clouds = [cloud(mesh) for mesh in meshes]
            steps += [cloud_chamfer(clouds[i], clouds[i + 1]) for i in range(len(clouds) - 1)]
            ends.append(cloud_chamfer(clouds[0], clouds[-1]))
            closed += [mesh.is_watertight for mesh in meshes]
        rows.append(
            [space, f"{np.mean(steps):.4f}", f"{np.max(steps):.4f}", f"{np.mean(ends):.4f}", f"{np.mean(closed):.0%}"]
        )
    table(
        f"Interpolation smoothness, {len(pairs)} pairs x 8 steps (decoded at 96^3 / extracted at 64^3)",
        ["space", "consecutive Chamfer, mean", "consecutive, max", "Chamfer between the ends", "watertight surfaces"],
        rows,
    )


def _generation_table(tools, train, test, collection: Path) -> None:
    gan = load_gan(tools.folder, tools.model)
    classes = list(gan.class_names) or [None]
    per_class = max(1, 44 // len(classes))
    codes = np.concatenate([gan.sample(per_class, seed=1, class_name=c) for c in classes])
    generated = [_decoded_or_empty(tools, code, DecodeSettings()) for code in codes]
    reference = [cloud(source_in_shape_frame(shape, collection)[0]) for shape, _ in train]
    held_out = [cloud(source_in_shape_frame(shape, collection)[0], seed=2) for shape, _ in test[: len(codes)]]
    rows = []
    for what, clouds, closed in (
        ("GAN samples (decoded, 96^3)", [cloud(m) for m in generated], np.mean([m.is_watertight for m in generated])),
        ("held-out real shapes", held_out, 1.0),
    ):
        matrix = np.array([[cloud_chamfer(c, r) for r in reference] for c in clouds])  # (samples, reference)
        coverage = len(set(matrix.argmin(axis=1).tolist())) / len(reference)
        mmd = float(matrix.min(axis=0).mean())
        rows.append([what, len(clouds), f"{coverage:.1%}", f"{mmd:.4f}", f"{closed:.0%}"])
    table(
        f"Generation vs the {len(train)} training shapes ({'conditional' if gan.class_names else 'unconditional'} GAN)",
        ["set", "shapes", "coverage", "MMD (Chamfer)", "watertight surfaces"],
        rows,
    )


def _completion_table(tools, args, test) -> None:
    manifest = json.loads((args.partials / "manifest.json").read_text())
    source_of = {item["file"]: item["source"] for item in manifest["items"]}
    complete_by_source = {shape.provenance["source_name"]: shape for shape, _ in test}
    partials = [read_shape(p) for p in sorted(args.partial_shapes.glob("*.h5"))]
    partials = [p for p in partials if source_of.get(p.provenance["source_name"]) in complete_by_source]
    before, after = [], []
    for partial in partials:
        whole = complete_by_source[source_of[partial.provenance["source_name"]]]
        mesh, points = source_in_shape_frame(whole, args.collection)  # the complete mesh, its normalised frame

        before.append(reconstruction_quality(mesh, points, in_frame_of(whole, partial)))
        after.append(reconstruction_quality(mesh, points, in_frame_of(whole, complete(tools, partial))))
    better = np.mean([a.chamfer < b.chamfer for a, b in zip(after, before)]) if partials else float("nan")
    rows = [
        [what, f"{np.median([q.chamfer for q in qs]):.4f}", f"{np.median([q.fscore for q in qs]):.3f}"]
        for what, qs in (("partial input", before), ("completed", after))
    ]
    rows.append(["completed closer than the partial", f"{better:.0%} of shapes", ""])
    table(
        f"Completion of {len(partials)} held-out cut shapes vs their complete meshes (medians)",
        ["shape", "Chamfer", "F-score"],
        rows,
    )


def _timing_table(tools, shapes, embedding_ms: dict[str, float]) -> None:
    a, b = shapes[0][0], shapes[1][0]
    library = [s for s, _ in shapes]

    def timed(run) -> float:
        started = time.perf_counter()
        run()
        return time.perf_counter() - started

    def with_mesh(make):
        return lambda: [extract_mesh(s.architecture, s.weights, 128, transform=s.transform) for s in make()]

    rows = [
        ["embed one shape", f"{embedding_ms['one']:.2f} ms", f"{embedding_ms['batched']:.2f} ms per shape in a batch"],
        [
            "Interpolate, 1 in-between (embedding)",
            f"{timed(with_mesh(lambda: interpolate(tools, a, b, [0.5]))):.1f} s",
            "decode + fit + mesh",
        ],
        [
            "Interpolate, 5 in-betweens (weights)",
            f"{timed(with_mesh(lambda: interpolate(tools, a, b, [0.2, 0.4, 0.5, 0.6, 0.8], space='weights'))):.2f} s",
            "no fitting",
        ],
        ["Generate 1", f"{timed(with_mesh(lambda: generate(tools, 1, seed=3))):.1f} s", "decode + fit + mesh"],
        ["Complete 1", f"{timed(with_mesh(lambda: [complete(tools, a)])):.1f} s", "decode + fit + register + mesh"],
        [
            "Find similar (k=5)",
            f"{timed(lambda: similar(tools.model, a, library, 5)) * 1e3:.0f} ms",
            f"over {len(library)} shapes",
        ],
        ["Classify", f"{timed(lambda: classify(tools, a)) * 1e3:.0f} ms", ""],
    ]
    table("Operation times on this CPU (one torch thread), meshes at 128^3", ["operation", "time", "note"], rows)


if __name__ == "__main__":
    main()
