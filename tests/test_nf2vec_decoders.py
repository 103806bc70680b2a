"""The decoder choice of the nf2vec operations: the latent family by default when the model folder has it
(CLI and service end to end for each operation), the implicit decoder still selectable, and a folder
without the latent files falling back to the implicit decoder. Tiny toolkit models: mechanics, not quality."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import Result
from typer.testing import CliRunner

from backend.cli import app
from backend.errors import NeuralShapesError
from backend.meshes.loading import load_mesh_file
from backend.nf2vec.latent import LATENT_NAME, flatten
from backend.nf2vec.latent_encoder import ENCODER_NAME
from backend.nf2vec.ops import operations
from backend.nf2vec.ops.latent_ops import LatentCompletionSettings, _normalised, blend_sampler
from backend.nf2vec.ops.tools import load_tools
from backend.nf2vec.tasks.latent_gan import load_gan
from backend.nf2vec.tasks.z_gan import load_z_gan, train_z_gan, training_labels, z_gan_sampler
from backend.shapes.shape_file import read_shape, shape_to_bytes
from tests.nf2vec_toolkit import CLASS_OF, CLASSES, add_latent_family, build_toolkit
from tests.test_service_nf2vec import finished, nf2vec_server
from tests.test_z_gan import TOY_GAN

pytestmark = [pytest.mark.usefixtures("single_torch_thread"), pytest.mark.slow]
QUICK_COMPLETION = LatentCompletionSettings(
    yaw_starts=2,
    steps=30,
    context_points=512,
    prior_points=1024,
    fuse=replace(LatentCompletionSettings().fuse, max_steps=30, eval_every=30),
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The toolkit's implicit-only model folder, a copy with the latent files, its shapes and meshes."""
    root = tmp_path_factory.mktemp("decoders")
    _, shapes, collection = build_toolkit(root)
    latent_folder = root / "latent-model"
    shutil.copytree(root / "model", latent_folder)
    add_latent_family(root, latent_folder, shapes, collection)
    return {
        "implicit": root / "model",
        "latent": latent_folder,
        "shapes": shapes,
        "collection": collection,
        "shape_files": root / "shapes",
    }


def _cli(*args) -> Result:
    """The command run in process (a fresh interpreter would add seconds of imports per call)."""
    return CliRunner().invoke(app, [str(arg) for arg in args])


def _operation(path) -> str:
    return read_shape(path).provenance["operation"]


def test_the_default_decoder_follows_the_folder_and_latent_without_its_files_is_refused(folders, tmp_path):
    assert load_tools(folders["latent"]).default_decoder == "latent"
    assert load_tools(folders["implicit"]).default_decoder == "implicit"
    half = tmp_path / "half"
    shutil.copytree(folders["implicit"], half)
    shutil.copy(folders["latent"] / LATENT_NAME, half / LATENT_NAME)  # the encoder is missing: implicit only
    tools = load_tools(half)
    assert tools.default_decoder == "implicit" and tools.latent is None
    with pytest.raises(NeuralShapesError, match=f"the latent decoder needs {ENCODER_NAME} in") as error:
        tools.decoder("latent")
    assert "\n" not in str(error.value)
    with pytest.raises(NeuralShapesError, match="decoder must be 'latent' or 'implicit'"):
        tools.decoder("neighbours")


def test_latent_operations_in_process(folders):
    tools = load_tools(folders["latent"])
    by_name = {shape.name: shape for shape in folders["shapes"]}
    a, b = by_name["sphere"], by_name["cube"]
    # The quadratic fade: mid-way, the decoded mean of the ends' encoded z plus a quarter of each end's residual.
    [middle] = operations.interpolate(tools, a, b, [0.5])
    assert middle.provenance["operation"] == "interpolate-latent" and middle.provenance["fade"] == "quadratic"
    latent, z = tools.require_latent(), torch.from_numpy(operations.encode(tools, [a, b]))
    with torch.no_grad():
        decoded = latent.flat(z).numpy()
        expected = latent.flat(z.mean(0, keepdim=True))[0].numpy()
    expected += 0.25 * (flatten(a.weights) - decoded[0]) + 0.25 * (flatten(b.weights) - decoded[1])
    np.testing.assert_allclose(flatten(middle.weights), expected, atol=1e-4)
    shapes = operations.generate(tools, 2, seed=1, class_name="round", truncation=0.0)
    assert [s.provenance["truncation"] for s in shapes] == ["0", "0"] and shapes[0].provenance[
        "operation"
    ] == "generate-latent"
    np.testing.assert_array_equal(
        flatten(shapes[0].weights), flatten(shapes[1].weights)
    )  # truncation 0: the class mean
    ranked = operations.classify(tools, a)
    assert sorted(name for name, _ in ranked) == sorted(CLASSES) and sum(p for _, p in ranked) == pytest.approx(1.0)
    [nearest, *_] = operations.similar(tools, a, [b, a], k=2)
    assert (nearest.index, nearest.distance) == (1, 0.0)
    # The implicit decoder's GAN truncates its noise: at 0 every draw of a class is its zero-noise embedding.
    codes = tools.task("gan", load_gan).sample(3, seed=1, class_name="round", truncation=0.0)
    np.testing.assert_array_equal(codes[0], codes[2])
    assert not np.array_equal(*tools.task("gan", load_gan).sample(2, seed=1, class_name="round"))
    assert operations.generation_classes(tools) == CLASSES


def test_generate_blends_training_latents_or_samples_the_folders_z_gan_when_it_has_one(folders, tmp_path):
    with_gan = tmp_path / "with-gan"
    shutil.copytree(folders["latent"], with_gan)
    tools = load_tools(with_gan)
    prior_shapes = operations.generate(tools, 2, seed=3, class_name="round", truncation=1.0)  # blends, without a GAN
    expected = blend_sampler(tools.latent)(2, torch.Generator().manual_seed(3), "round", 1.0)
    np.testing.assert_allclose(flatten(prior_shapes[0].weights), _decoded(tools.latent, expected[0]), atol=1e-5)
    train_z_gan(tools.latent, with_gan, training_labels(tools.latent), replace(TOY_GAN, steps=20))
    gan_tools = load_tools(with_gan)
    gan_shapes = operations.generate(gan_tools, 2, seed=3, class_name="round", truncation=1.0)
    expected = z_gan_sampler(load_z_gan(with_gan, gan_tools.latent))(2, torch.Generator().manual_seed(3), "round", 1.0)
    assert not np.allclose(flatten(prior_shapes[0].weights), flatten(gan_shapes[0].weights))
    np.testing.assert_allclose(flatten(gan_shapes[0].weights), _decoded(gan_tools.latent, expected[0]), atol=1e-5)


def _decoded(latent, z: np.ndarray) -> np.ndarray:
    """Flat weights of the net Generate makes of one latent z (k,): decoded, its frame normalised."""
    return _normalised(latent.architecture, latent.flat(torch.from_numpy(z[None]))[0].detach().numpy())


def test_the_latent_classifier_ranks_training_shapes_by_their_class_means(folders):
    tools = load_tools(folders["latent"])
    means = tools.latent_encoder.class_means  # the encoder's mean z of each class's training nets
    assert means is not None and means.shape == (len(CLASSES), tools.latent.k)
    z = operations.encode(tools, folders["shapes"])
    round_rows = [i for i, shape in enumerate(folders["shapes"]) if CLASS_OF[shape.name] == "round"]
    np.testing.assert_allclose(means[CLASSES.index("round")].numpy(), z[round_rows].mean(0), atol=1e-5)
    hits = [operations.classify(tools, shape)[0][0] == CLASS_OF[shape.name] for shape in folders["shapes"]]
    assert np.mean(hits) >= 4 / 6


def test_cli_defaults_to_latent_and_implicit_stays_selectable(folders, tmp_path):
    latent, implicit, files = folders["latent"], folders["implicit"], folders["shape_files"]
    sphere, cube = files / "sphere.h5", files / "cube.h5"
    result = _cli(
        "interpolate", sphere, cube, "-o", tmp_path / "between", "--model", latent, "--resolution", "24", "--json"
    )
    assert result.exit_code == 0, result.stderr
    assert _operation(json.loads(result.stdout)[0]["output"]) == "interpolate-latent"
    result = _cli(
        "generate",
        "-o",
        tmp_path / "made",
        "--count",
        "2",
        "--class",
        "boxy",
        "--truncation",
        "0.5",
        "--model",
        latent,
        "--resolution",
        "24",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    assert [read_shape(row["output"]).name for row in json.loads(result.stdout)] == [
        "generated-boxy-0-0",
        "generated-boxy-0-1",
    ]
    # Distances tell the codes apart: encoder z by default, nf2vec embeddings with --decoder implicit and in
    # the implicit-only folder, whose default falls back.
    library = [read_shape(path) for path in sorted(files.glob("*.h5"))]
    for model, decoder, expected in (
        (latent, [], "latent"),
        (latent, ["--decoder", "implicit"], "implicit"),
        (implicit, [], "implicit"),
    ):
        result = _cli("similar", sphere, files, "-k", "2", "--model", model, "--json", *decoder)
        assert result.exit_code == 0, result.stderr
        wanted = operations.similar(load_tools(latent), read_shape(sphere), library, 2, expected)
        assert [row["distance"] for row in json.loads(result.stdout)] == pytest.approx(
            [n.distance for n in wanted], abs=1e-5
        )
    result = _cli("classify", cube, "--decoder", "latent", "--model", implicit)
    assert result.exit_code == 1 and result.stderr.strip().count("\n") == 0
    assert f"the latent decoder needs {LATENT_NAME} and {ENCODER_NAME}" in result.stderr


def test_latent_completion_takes_the_partial_mesh_surface(folders):
    tools, by_name = load_tools(folders["latent"]), {shape.name: shape for shape in folders["shapes"]}
    mesh = load_mesh_file(folders["collection"] / "cone.ply")
    completed = operations.complete(tools, by_name["cone"], mesh.trimesh(), latent_settings=QUICK_COMPLETION)
    assert completed.name == "cone-completed" and completed.provenance["operation"] == "complete-latent"


def test_service_defaults_to_latent_with_implicit_selectable(folders, tmp_path):
    server = nf2vec_server(tmp_path / "data", folders["latent"])
    try:
        client = server.client
        info = client.nf2vec_info()
        assert (info.decoder, info.decoders, info.classes) == ("latent", ["latent", "implicit"], CLASSES)
        assert info.tasks == {"generate": True, "classify": True, "complete": True}
        ids = {shape.name: client.import_shape(shape_to_bytes(shape)).id for shape in folders["shapes"]}
        started = time.perf_counter()
        job = finished(client, client.start_interpolate(ids["sphere"], ids["cube"], count=3).id)
        assert job.inputs["decoder"] == "latent" and len(job.shape_ids) == 3
        assert client.shape(job.shape_ids[0]).provenance["operation"] == "interpolate-latent"
        job = finished(client, client.start_generate(2, seed=4, class_name="round", truncation=0.3).id)
        assert client.shape(job.shape_ids[1]).provenance["operation"] == "generate-latent"
        assert time.perf_counter() - started < 10  # no decode-and-fit: milliseconds of work, the rest is polling
        job = finished(client, client.start_generate(1, seed=4, class_name="round", decoder="implicit").id)
        assert client.shape(job.shape_ids[0]).provenance["operation"] == "generate"
        assert client.similar(ids["cube"], k=1)[0].name != "cube"  # itself left out
        assert {row.class_name for row in client.classify(ids["cube"])} == set(CLASSES)
        assert {row.class_name for row in client.classify(ids["cube"], decoder="implicit")} == set(CLASSES)
        job = finished(client, client.start_complete(shape_id=ids["ring"]).id)
        assert client.shape(job.shape_ids[0]).provenance["operation"] == "complete-latent"
    finally:
        server.stop()
