"""nf2vec operations on a tiny tools folder: decoding to shapes, interpolation in both spaces, generation,
completion and its registration, classification, and their refusals. Quality is measured in bench/."""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.errors import NeuralShapesError
from backend.meshes.extraction import extract_mesh
from backend.meshes.metrics import reconstruction_quality, surface_samples
from backend.nf2vec.decoding import decoded_surface
from backend.nf2vec.embedding import embed
from backend.nf2vec.ops.classification import classify
from backend.nf2vec.ops.completion import complete, register
from backend.nf2vec.ops.generation import generate, generation_classes
from backend.nf2vec.ops.interpolation import in_between_times, interpolate, interpolated_frame
from backend.nf2vec.ops.tools import load_tools
from backend.nf2vec.tasks.neighbour_decoder import build_neighbour_decoder, load_neighbour_decoder
from backend.shapes.architecture import random_family
from backend.shapes.frame import Similarity
from backend.shapes.network import evaluate_sdf
from backend.shapes.shape_file import read_shape, write_shape
from tests.conftest import run_cli
from tests.nf2vec_toolkit import CLASSES, QUICK_DECODE, build_toolkit


@pytest.fixture(scope="module")
def toolkit(tmp_path_factory):
    return build_toolkit(tmp_path_factory.mktemp("toolkit"))


pytestmark = [pytest.mark.usefixtures("single_torch_thread"), pytest.mark.slow]


def test_weight_space_interpolation_blends_weights_and_frames(toolkit, tmp_path):
    tools, shapes, _ = toolkit
    a, b = shapes[0], shapes[2]
    start, middle, end = interpolate(tools, a, b, [0.0, 0.5, 1.0], space="weights")
    for (wa, ba), (w0, b0), (wb, bb), (wm, bm) in zip(a.weights, start.weights, b.weights, middle.weights):
        np.testing.assert_array_equal(w0, wa)
        np.testing.assert_allclose(wm, (wa + wb) / 2, atol=1e-7)
        np.testing.assert_allclose(bm, (ba + bb) / 2, atol=1e-7)
    assert end.transform.scale == pytest.approx(b.transform.scale)
    assert middle.transform.scale == pytest.approx(np.sqrt(a.transform.scale * b.transform.scale))
    assert middle.name == "sphere-slab-t500" and middle.provenance["operation"] == "interpolate-weights"
    assert np.isnan(middle.metrics["chamfer"]) and middle.metrics["steps"] == 0  # no reference surface
    write_shape(tmp_path / "m.h5", middle)
    back = read_shape(tmp_path / "m.h5")
    assert np.isnan(back.metrics["surface_error"]) and back.provenance["inputs"] == "sphere,slab"


def test_embedding_space_interpolation_decodes_and_fits_shapes_of_the_family(toolkit, tmp_path):
    tools, shapes, _ = toolkit
    events = []
    result = interpolate(
        tools,
        shapes[0],
        shapes[1],
        in_between_times(2),
        settings=QUICK_DECODE,
        progress=lambda fraction, message: events.append((fraction, message)),
    )
    assert [shape.name for shape in result] == ["sphere-cube-t333", "sphere-cube-t667"]
    for shape in result:
        assert shape.family_id == tools.family.family_id
        assert np.isfinite(shape.metrics["surface_error"]) and shape.metrics["steps"] > 0
        assert shape.provenance["nf2vec_model"] == tools.model.model_id
        write_shape(tmp_path / f"{shape.name}.h5", shape)  # an ordinary, valid shape file
    fractions = [fraction for fraction, _ in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_in_between_times_and_frames():
    assert in_between_times(3) == [0.25, 0.5, 0.75]
    with pytest.raises(NeuralShapesError, match="at least 1"):
        in_between_times(0)
    a, b = Similarity(1.0, np.zeros(3)), Similarity(4.0, np.array([2.0, 0.0, 0.0]))
    half = interpolated_frame(a, b, 0.5)
    assert half.scale == pytest.approx(2.0) and half.centre.tolist() == [1.0, 0.0, 0.0]


def test_interpolation_refuses_other_families_and_spaces(toolkit):
    tools, shapes, _ = toolkit
    stranger = replace(shapes[1], family_id=random_family().family_id)
    with pytest.raises(NeuralShapesError, match="interpolation works on shapes of family"):
        interpolate(tools, shapes[0], stranger, [0.5], space="weights")
    with pytest.raises(NeuralShapesError, match="'embedding' or 'weights'"):
        interpolate(tools, shapes[0], shapes[1], [0.5], space="pixels")
    with pytest.raises(NeuralShapesError, match="finite t"):
        interpolate(tools, shapes[0], shapes[1], [float("nan")])


def test_generation_is_reproducible_and_knows_its_classes(toolkit):
    tools, _, _ = toolkit
    assert generation_classes(tools) == CLASSES
    first = generate(tools, 2, seed=5, class_name="round", settings=QUICK_DECODE)
    again = generate(tools, 2, seed=5, class_name="round", settings=QUICK_DECODE)
    assert [shape.name for shape in first] == ["generated-round-5-0", "generated-round-5-1"]
    for one, other in zip(first, again):
        for (w1, _), (w2, _) in zip(one.weights, other.weights):
            np.testing.assert_array_equal(w1, w2)
    with pytest.raises(NeuralShapesError, match="round"):  # the error lists the known classes
        generate(tools, 1, seed=0, class_name="teapot", settings=QUICK_DECODE)


def test_completion_places_the_result_over_the_partial(toolkit):
    tools, shapes, _ = toolkit
    partial = shapes[2]  # the slab stands in for a partial shape here
    completed = complete(tools, partial, settings=QUICK_DECODE)
    assert completed.name == "slab-completed" and completed.provenance["operation"] == "complete"
    assert completed.transform.scale > 0 and np.isfinite(completed.transform.centre).all()


def test_registration_recovers_a_known_scale_and_offset(toolkit):
    _, shapes, _ = toolkit
    sphere = shapes[0]
    # The same field seen through x' = 0.8 x + (0.1, 0, 0): registering the original onto it must find that map.
    moved = replace(sphere, weights=_moved_weights(sphere.weights, 0.8, np.array([0.1, 0.0, 0.0])))
    scale, offset = register(sphere, moved)
    assert scale == pytest.approx(0.8, abs=0.03)
    np.testing.assert_allclose(offset, [0.1, 0.0, 0.0], atol=0.03)
    points = np.random.default_rng(0).uniform(-0.5, 0.5, (100, 3)).astype(np.float32)
    np.testing.assert_allclose(
        evaluate_sdf(moved.architecture, moved.weights, 0.8 * points + [0.1, 0, 0]),
        evaluate_sdf(sphere.architecture, sphere.weights, points),
        atol=1e-5,
    )


def test_classification_gives_a_distribution_over_the_classes(toolkit):
    tools, shapes, _ = toolkit
    ranked = classify(tools, shapes[0])
    assert sorted(name for name, _ in ranked) == sorted(CLASSES)
    probabilities = [p for _, p in ranked]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) == pytest.approx(1.0, abs=1e-5)


def test_an_embedding_that_decodes_to_nothing_is_a_clear_error(toolkit):
    tools, shapes, _ = toolkit
    empty = copy.deepcopy(tools.model)
    with torch.no_grad():
        empty.decoder.output.bias += 100.0  # positive everywhere: no inside, no surface
    implicit = replace(QUICK_DECODE, resolution=16, decoder="implicit")
    with pytest.raises(NeuralShapesError, match="decoded field has no surface"):
        decoded_surface(replace(tools, model=empty), embed(tools.model, shapes[:1])[0], "nothing", implicit)
    with pytest.raises(NeuralShapesError, match="unknown decoder"):
        decoded_surface(tools, embed(tools.model, shapes[:1])[0], "x", replace(QUICK_DECODE, decoder="magic"))


def test_tools_folders_are_checked(toolkit, tmp_path):
    tools, _, _ = toolkit
    with pytest.raises(NeuralShapesError, match="cannot read file"):
        load_tools(tmp_path / "absent")
    bare = tmp_path / "bare"
    bare.mkdir()
    # The toolkit's shapes are of the bundled default family: the folder names it and holds no copy.
    assert not (tools.folder / "family.h5").exists()
    for name in ("config.json", "weights.safetensors"):
        (bare / name).write_bytes((tools.folder / name).read_bytes())
    without_tasks = load_tools(bare)
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "weights.safetensors").write_bytes((tools.folder / "weights.safetensors").read_bytes())
    config = json.loads((tools.folder / "config.json").read_text())
    (stranger / "config.json").write_text(json.dumps({**config, "family_id": "elsewhere-0123456789ab"}))
    with pytest.raises(
        NeuralShapesError,
        match="family.h5: missing .the model's family elsewhere-0123456789ab is not one this tool bundles",
    ):
        load_tools(stranger)
    with pytest.raises(NeuralShapesError, match="gan.safetensors"):
        generate(without_tasks, 1)


def _moved_weights(weights, scale, offset):
    """Weights of f'(x') = f((x' - offset) / scale): only the first layer changes."""
    (w0, b0), *rest = weights
    w = (w0 / scale).astype(np.float32)
    b = (b0 - w @ offset).astype(np.float32)
    return [(w, b), *rest]


def test_operation_commands_end_to_end(toolkit, tmp_path):
    tools, _, collection = toolkit
    shapes_dir = tools.folder.parent / "shapes"
    model = ("--model", tools.folder)
    blended = run_cli(
        "interpolate",
        shapes_dir / "sphere.h5",
        shapes_dir / "cube.h5",
        "-o",
        tmp_path,
        "--space",
        "weights",
        "--count",
        "3",
        "--resolution",
        "32",
        *model,
    )
    assert blended.returncode == 0, blended.stderr
    assert sorted(p.name for p in tmp_path.glob("sphere-cube-*.h5")) == [
        "sphere-cube-t250.h5",
        "sphere-cube-t500.h5",
        "sphere-cube-t750.h5",
    ]
    assert (tmp_path / "sphere-cube-t500.obj").stat().st_size > 0

    made = run_cli("generate", "-o", tmp_path, "--count", "1", "--seed", "2", "--class", "boxy", "--json", *model)
    assert made.returncode == 0, made.stderr
    [row] = json.loads(made.stdout)
    assert read_shape(Path(row["output"])).provenance["class"] == "boxy"

    completed = run_cli("complete", collection / "slab.ply", "-o", tmp_path, *model)  # a mesh: fitted, then completed
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "slab-completed.h5").exists()

    near = run_cli("similar", shapes_dir / "ring.h5", shapes_dir, "-k", "2", "--json", *model)
    assert near.returncode == 0, near.stderr
    assert Path(json.loads(near.stdout)[0]["file"]).name == "ring.h5"  # itself, at distance 0
    ranked = run_cli("classify", shapes_dir / "ring.h5", "--json", *model)
    assert ranked.returncode == 0 and {c["class"] for c in json.loads(ranked.stdout)[0]["classes"]} == set(CLASSES)

    refused = run_cli("generate", "-o", tmp_path, "--class", "teapot", *model)
    assert refused.returncode == 1 and "teapot" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    rebuilt = tmp_path / "model-copy"
    shutil.copytree(tools.folder, rebuilt)
    (rebuilt / "neighbours.safetensors").unlink()
    built = run_cli("build-neighbour-decoder", shapes_dir, "--model", rebuilt, "-k", "3")
    assert built.returncode == 0 and "over 6 anchors, k 3" in built.stdout, built.stderr
    missing = run_cli("classify", shapes_dir / "ring.h5", "--model", tmp_path / "nowhere")
    assert missing.returncode == 1 and "cannot read file" in missing.stderr


def test_small_stray_bodies_of_the_decoded_surface_are_dropped(toolkit, monkeypatch):
    tools, _, _ = toolkit
    axis = np.linspace(-1, 1, 48, dtype=np.float32)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    big = np.sqrt((x + 0.3) ** 2 + y**2 + z**2) - 0.5
    stray = np.sqrt((x - 0.7) ** 2 + y**2 + z**2) - 0.12  # area ~6% of the big sphere's
    monkeypatch.setattr("backend.nf2vec.decoding.decode_grid", lambda *args: np.minimum(big, stray))
    surface = decoded_surface(
        tools, np.zeros(64, np.float32), "two", replace(QUICK_DECODE, min_body_fraction=0.1)
    ).trimesh()
    assert surface.body_count == 1 and surface.vertices[:, 0].max() < 0.3
    kept = decoded_surface(tools, np.zeros(64, np.float32), "two", QUICK_DECODE).trimesh()
    assert kept.body_count == 2  # off by default


def test_the_neighbour_decoder_decodes_an_anchor_to_its_own_field_and_blends_between(toolkit):
    tools, shapes, _ = toolkit
    decoder = load_neighbour_decoder(tools.folder, tools.model)
    codes = embed(tools.model, shapes)
    points = np.random.default_rng(1).uniform(-0.9, 0.9, (2000, 3)).astype(np.float32)
    own = [evaluate_sdf(s.architecture, s.weights, points) for s in shapes]
    at_anchor = decoder.field(codes[0], points)
    assert np.abs(at_anchor - own[0]).mean() < 0.2 * np.abs(own[1] - own[0]).mean()  # the anchor dominates
    extra = decoder.field(codes[0] + 5.0, points, [(codes[0] + 5.0, shapes[3].weights)])  # an added anchor, exactly hit
    np.testing.assert_allclose(extra, own[3], atol=5e-3)  # float16 anchors blended away; the extra one is exact
    values = decoder.field((codes[0] + codes[1]) / 2, points)
    assert np.isfinite(values).all()
    with pytest.raises(NeuralShapesError, match="two or more"):
        build_neighbour_decoder(codes[:1], [shapes[0].weights], ["one"], shapes[0].architecture)


def test_embedding_interpolation_reproduces_its_ends_and_generation_makes_closed_meshes(toolkit):
    """t = 0 and t = 1 decode to the inputs (the neighbour decoder anchors them): the decoded surfaces lie
    within a Chamfer of 0.02 (normalised units) of the inputs' own, and the nets fitted to them (a short
    test fit of 400 steps) within 0.1; generated shapes are closed meshes."""
    tools, shapes, _ = toolkit
    settings = replace(QUICK_DECODE, resolution=64, fit=replace(QUICK_DECODE.fit, max_steps=400))
    a, b = shapes[0], shapes[5]  # sphere, ring
    codes = embed(tools.model, [a, b])
    start, end = interpolate(tools, a, b, [0.0, 1.0], settings=settings)
    for code, made, source in ((codes[0], start, a), (codes[1], end, b)):
        own = extract_mesh(source.architecture, source.weights, 64)
        decoded = decoded_surface(
            tools, code, "end", settings, [(codes[0], a.weights), (codes[1], b.weights)]
        ).trimesh()
        assert _chamfer(decoded, own) < 0.02
        assert _chamfer(extract_mesh(made.architecture, made.weights, 64), own) < 0.1
    for shape in generate(tools, 2, seed=7, settings=settings):
        mesh = extract_mesh(shape.architecture, shape.weights, 64)
        assert len(mesh.faces) > 0 and mesh.is_watertight


def _chamfer(first, second) -> float:
    """Point-to-surface Chamfer (no sampling-gap bias, as backend.meshes.metrics measures shapes)."""
    return reconstruction_quality(second, surface_samples(second.vertices, second.faces, 4000, seed=0), first).chamfer
