"""``import-keras``: Keras weights files (the paper's published nets) as neural shapes.

The files are written by :func:`write_keras_weights` in exactly the layout of Keras' ``save_weights``
(tf.keras 2.2.4, as the paper's published files): root attrs ``layer_names``, ``backend``,
``keras_version``; per layer a group with attr ``weight_names`` and datasets
``/dense_k/dense_k/kernel:0`` (in, out) and ``/dense_k/dense_k/bias:0`` (out,).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import trimesh
import typer
from typer.testing import CliRunner

from backend.cli import app as neural_shapes
from backend.cli.import_keras import import_keras_command
from backend.errors import NeuralShapesError
from backend.shapes.architecture import Architecture, Weights, random_family
from backend.shapes.frame import Similarity
from backend.shapes.keras_import import import_keras_file, keras_shape_from_bytes, read_model_json
from backend.shapes.network import evaluate_sdf
from backend.shapes.shape_file import read_shape, write_shape
from tests.fields import fit_sphere

PAPER_NAMES = [f"dense_{k}" if k else "dense" for k in range(9)]


def write_keras_weights(
    path: Path,
    weights: Weights,
    *,
    names: list[str] | None = None,
    layer_names: bool = True,
    whole_model: str | None = None,
    creation_order: list[int] | None = None,
) -> Path:
    """``weights`` (torch layout: per layer weight (out, in), bias (out,)) as Keras' ``save_weights`` writes
    them: kernels transposed to (in, out), float32, one group per layer named ``names`` (default the
    paper's dense, dense_1, ...). ``layer_names=False`` leaves out the root's layer list; ``whole_model``
    (a model JSON) writes a ``model.save`` file instead: the layers under ``/model_weights``, the JSON in
    the root's ``model_config``, with a weightless ``input_1`` layer first; ``creation_order`` creates the groups in another order than the list."""
    names = names or PAPER_NAMES[: len(weights)] + [f"dense_{k}" for k in range(9, len(weights))]
    with h5py.File(path, "w") as f:
        holder = f.create_group("model_weights") if whole_model is not None else f
        if whole_model is not None:
            f.attrs["model_config"] = whole_model.encode()
        holder.attrs["backend"] = b"tensorflow"
        holder.attrs["keras_version"] = b"2.2.4-tf"
        if whole_model is not None:  # a functional model's input layer: a group with no weights
            holder.create_group("input_1").attrs["weight_names"] = np.array([])  # Keras writes [] as float64
        if layer_names:
            listed = (["input_1"] if whole_model is not None else []) + names
            holder.attrs["layer_names"] = np.array([name.encode() for name in listed])
        for index in creation_order or range(len(weights)):
            weight, bias = weights[index]
            name = names[index]
            group = holder.create_group(name)
            group.attrs["weight_names"] = np.array([f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()])
            group.create_dataset(f"{name}/kernel:0", data=np.asarray(weight, dtype=np.float32).T)
            group.create_dataset(f"{name}/bias:0", data=np.asarray(bias, dtype=np.float32))
    return path


def keras_forward(path: Path, points: np.ndarray, hidden=lambda z: np.maximum(z, 0.0), output=np.tanh) -> np.ndarray:
    """What Keras computes from the file, in numpy: ``act(x @ kernel + bias)`` per layer in layer_names order."""
    with h5py.File(path, "r") as f:
        h = points.astype(np.float64)
        names = [name.decode() for name in f.attrs["layer_names"]]
        for index, name in enumerate(names):
            z = h @ f[f"{name}/{name}/kernel:0"][()] + f[f"{name}/{name}/bias:0"][()]
            h = output(z) if index == len(names) - 1 else hidden(z)
    return h[:, 0]


def model_json(activations: list[str], units: list[int] | None = None, class_name: str = "Dense") -> str:
    """A tf.keras functional model's JSON, as ``model.to_json()`` writes it (the paper's key.json)."""
    units = units or [32] * (len(activations) - 1) + [1]
    layers = [{"class_name": "InputLayer", "config": {"batch_input_shape": [None, 3], "name": "input_1"}}]
    for index, (activation, size) in enumerate(zip(activations, units)):
        name = f"dense_{index}" if index else "dense"
        config = {"name": name, "units": size, "activation": activation, "use_bias": True}
        layers.append({"class_name": class_name if index == 1 else "Dense", "config": config, "name": name})
    return json.dumps(
        {"class_name": "Model", "config": {"name": "model", "layers": layers}, "keras_version": "2.2.4-tf"}
    )


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("import-keras")(import_keras_command)
    app.command("unused")(lambda: None)  # two commands: typer then takes the command name, as the real CLI does
    return app


def _invoke(app: typer.Typer, *args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def sphere() -> Weights:
    return fit_sphere()


@pytest.fixture(scope="module")
def points() -> np.ndarray:
    return np.random.default_rng(3).uniform(-1, 1, (4096, 3)).astype(np.float32)


def test_paper_layout_imports_to_the_same_field(tmp_path, sphere, points):
    path = write_keras_weights(tmp_path / "bunny.h5", sphere)
    shape = import_keras_file(path)
    assert shape.name == "bunny" and shape.architecture == Architecture()  # 8 x 32 ReLU, tanh: 7,553 weights
    assert shape.family_id.startswith("keras-import-relu8x32-")
    for (weight, bias), (original_weight, original_bias) in zip(shape.weights, sphere):
        assert weight.shape == original_weight.shape and np.array_equal(weight, original_weight)
        assert np.array_equal(bias, original_bias)
    imported = evaluate_sdf(shape.architecture, shape.weights, points)
    np.testing.assert_allclose(imported, evaluate_sdf(Architecture(), sphere, points), atol=1e-6)
    np.testing.assert_allclose(imported, keras_forward(path, points), atol=1e-5)  # Keras' semantics, from the file
    inside = np.linalg.norm(points, axis=1) < 0.3
    assert (imported[inside] < 0).all() and (imported[np.linalg.norm(points, axis=1) > 0.7] > 0).all()

    assert np.isnan([shape.metrics[k] for k in ("surface_error", "chamfer", "fscore")]).all()
    assert shape.metrics["steps"] == 0 and shape.metrics["fit_seconds"] == 0
    assert shape.transform.scale == 1 and not shape.transform.centre.any()
    provenance = shape.provenance
    assert provenance["source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert provenance["source_name"] == "bunny.h5" and provenance["imported_from"] == "keras-hdf5"
    assert provenance["keras_version"] == "2.2.4-tf" and provenance["keras_layers"].startswith("dense, dense_1,")
    assert "assumed" in provenance["architecture_from"] and "assumed" in provenance["frame"]

    write_shape(tmp_path / "out.h5", shape)  # our reader takes it back whole
    again = read_shape(tmp_path / "out.h5")
    assert again.family_id == shape.family_id and again.provenance == provenance
    np.testing.assert_array_equal(evaluate_sdf(again.architecture, again.weights, points), imported)


def test_layer_order_from_layer_names_else_by_number(tmp_path, points):
    """A session's second model is dense_9 ... dense_17: dense_10 must follow dense_9, not dense_1."""
    weights = random_family(Architecture(), seed=5).initial_weights
    names = [f"dense_{k}" for k in range(9, 18)]
    order = [3, 0, 8, 1, 7, 2, 6, 4, 5]  # groups created out of order: the list decides
    expected = evaluate_sdf(Architecture(), weights, points)
    with_list = write_keras_weights(tmp_path / "a.h5", weights, names=names, creation_order=order)
    without = write_keras_weights(tmp_path / "b.h5", weights, names=names, layer_names=False, creation_order=order)
    for path in (with_list, without):
        shape = import_keras_file(path)
        assert shape.provenance["keras_layers"] == ", ".join(names)
        np.testing.assert_allclose(evaluate_sdf(shape.architecture, shape.weights, points), expected, atol=1e-6)


def test_whole_model_save_reads_its_activations(tmp_path, sphere, points):
    linear = model_json(["relu"] * 8 + ["linear"])
    shape = import_keras_file(write_keras_weights(tmp_path / "m.h5", sphere, whole_model=linear))
    assert shape.architecture.output_activation == "none" and shape.provenance["architecture_from"] == "model_config"
    raw = evaluate_sdf(Architecture(output_activation="none"), sphere, points)
    np.testing.assert_allclose(evaluate_sdf(shape.architecture, shape.weights, points), raw, atol=1e-6)

    elu = model_json(["elu"] * 8 + ["tanh"])  # the paper code's default Config: refused, not evaluated as ReLU
    with pytest.raises(NeuralShapesError, match=r"e\.h5: model_config: activations .*'elu'.* relu"):
        import_keras_file(write_keras_weights(tmp_path / "e.h5", sphere, whole_model=elu))


def test_model_json_is_checked(sphere, tmp_path):
    assert read_model_json(model_json(["relu"] * 8 + ["tanh"]), "key.json").units == (32,) * 8 + (1,)
    for bad, cause in (
        ("{", "not a Keras model JSON"),
        ("[1, 2]", "no config.layers"),
        ("[" * 100_000 + "]" * 100_000, "not a Keras model JSON"),  # nesting past the parser's recursion limit
        (model_json(["relu"] * 8 + ["tanh"], class_name="Lambda"), "'Lambda'; only Dense"),
        (json.dumps({"config": {"layers": []}}), "no Dense layers"),
    ):
        with pytest.raises(NeuralShapesError, match=cause):
            read_model_json(bad, "key.json")
    path = write_keras_weights(tmp_path / "w.h5", sphere)
    with pytest.raises(NeuralShapesError, match=r"key.json describes Dense layers of \[64"):
        import_keras_file(
            path, model_json=read_model_json(model_json(["relu"] * 8 + ["tanh"], [64] * 8 + [1]), "key.json")
        )


def test_command_imports_files_and_they_mesh_and_render(tmp_path, sphere):
    keras = tmp_path / "keras"
    keras.mkdir()
    write_keras_weights(keras / "ball.h5", sphere)
    write_keras_weights(keras / "ball2.h5", sphere)
    (keras / "broken.h5").write_bytes(b"not an HDF5 file at all")
    key = tmp_path / "key.json"
    key.write_text(model_json(["relu"] * 8 + ["tanh"]))
    out = tmp_path / "out"
    code, output = _invoke(_app(), "import-keras", keras, "-o", out, "--key", key, "--scale", 0.5, "--centre", 1, 2, 3)
    assert code == 1  # one failure: the others are still imported
    assert "broken.h5: not a valid Keras weights file" in output and "ball.h5: 8x32 relu -> tanh" in output
    assert sorted(p.name for p in out.iterdir()) == ["ball.h5", "ball2.h5"]
    shape = read_shape(out / "ball.h5")
    assert shape.transform.scale == 0.5 and shape.transform.centre.tolist() == [1, 2, 3]
    assert shape.provenance["architecture_from"] == "key.json" and shape.provenance["frame"].startswith("given")

    code, output = _invoke(neural_shapes, "mesh", out / "ball.h5", "-o", tmp_path / "ball.obj", "--resolution", 64)
    assert code == 0, output
    mesh = trimesh.load(tmp_path / "ball.obj")
    radii = np.linalg.norm(mesh.vertices - [1, 2, 3], axis=1)  # the 0.5 sphere, scaled by 1 / 0.5 around the centre
    assert abs(radii.mean() - 1.0) < 0.05 and mesh.is_watertight
    code, output = _invoke(neural_shapes, "render", out / "ball.h5", "-o", tmp_path / "ball.png", "--size", "64x64")
    assert code == 0 and (tmp_path / "ball.png").stat().st_size > 0, output

    code, output = _invoke(_app(), "import-keras", keras / "ball.h5", "-o", out, "--json", "--negate")
    assert code == 0
    row = json.loads(output)[0]
    assert row["family_id"].startswith("keras-import-relu8x32-") and row["parameters"] == 7553
    negated = read_shape(out / "ball.h5")
    probe = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.95]], dtype=np.float32)
    np.testing.assert_allclose(
        evaluate_sdf(negated.architecture, negated.weights, probe),
        -evaluate_sdf(Architecture(), sphere, probe),
        atol=1e-6,
    )


def test_command_never_overwrites_its_input_and_checks_options(tmp_path, sphere):
    path = write_keras_weights(tmp_path / "ball.h5", sphere)
    before = path.read_bytes()
    code, output = _invoke(_app(), "import-keras", path, "-o", tmp_path)
    assert code == 1 and "would replace it" in output and path.read_bytes() == before
    code, output = _invoke(_app(), "import-keras", path, "-o", tmp_path / "o", "--scale", 0)
    assert code == 1 and "--scale must be a positive number" in output


def test_nf2vec_operations_refuse_imported_shapes_by_family(tmp_path, sphere):
    """Imported nets share no initialisation with the default family: nf2vec says so instead of guessing."""
    out = tmp_path / "out"
    write_keras_weights(tmp_path / "a.h5", sphere)
    assert _invoke(_app(), "import-keras", tmp_path / "a.h5", "-o", out)[0] == 0
    code, output = _invoke(
        neural_shapes, "interpolate", out / "a.h5", out / "a.h5", "-o", tmp_path / "i", "--space", "weights"
    )
    assert (
        code == 1 and "is of family keras-import-relu8x32-" in output and "works on shapes of family default" in output
    )


def _edit(path: Path, change) -> Path:
    with h5py.File(path, "r+") as f:
        change(f)
    return path


def _replace(**datasets: np.ndarray):
    """A change that replaces the datasets of layers: ``dense_3={"kernel": ..., "bias": ...}`` style, by layer."""

    def change(f: h5py.File) -> None:
        for layer, parts in datasets.items():
            for part, data in parts.items():
                del f[f"{layer}/{layer}/{part}:0"]
                f.create_dataset(f"{layer}/{layer}/{part}:0", data=data)

    return change


def _set_attr(where: str, key: str, value):
    return lambda f: f[where].attrs.__setitem__(key, value)


def _delete(*paths: str):
    return lambda f: [f.__delitem__(path) for path in paths]


def _no_layers(f: h5py.File) -> None:
    _delete(*PAPER_NAMES)(f)
    del f.attrs["layer_names"]


HOSTILE = {
    "missing layer": (_delete("dense_3"), r"layer 'dense_3' of layer_names has no group /dense_3"),
    "narrower layer": (
        _replace(dense_3={"kernel": np.zeros((32, 16), np.float32), "bias": np.zeros(16, np.float32)}),
        r"layer 'dense_3' has a kernel of shape \(32, 16\), expected \(32, 32\)",
    ),
    "bias of another size": (
        _replace(dense_5={"bias": np.zeros(31, np.float32)}),
        r"/dense_5/dense_5/bias:0 has shape \(31,\), expected \(32,\)",
    ),
    "two outputs": (
        _replace(dense_8={"kernel": np.zeros((32, 2), np.float32), "bias": np.zeros(2, np.float32)}),
        r"layer 'dense_8' has a kernel of shape \(32, 2\), expected \(32, 1\)",
    ),
    "input of 2": (
        _replace(dense={"kernel": np.zeros((2, 32), np.float32)}),
        r"layer 'dense' has a kernel of shape \(2, 32\), expected \(3, 32\)",
    ),
    "kernel of 3 axes": (
        _replace(dense_1={"kernel": np.zeros((32, 32, 1), np.float32)}),
        r"/dense_1/dense_1/kernel:0 has shape \(32, 32, 1\), expected \(in, out\)",
    ),
    "NaN bias": (lambda f: f["dense_2/dense_2/bias:0"].__setitem__(0, np.nan), r"/dense_2/dense_2/bias:0 holds NaN"),
    "float64 kernel": (_replace(dense={"kernel": np.zeros((3, 32))}), r"/dense/dense/kernel:0 has dtype float64"),
    "huge dataset header": (
        lambda f: f.create_dataset("dense_9/dense_9/kernel:0", shape=(100_000_000, 32), dtype=np.float32),
        r"declares 12,800,000,000 bytes",
    ),
    "external link": (
        lambda f: f.__setitem__("dense_9", h5py.ExternalLink("/etc/passwd", "/")),
        r"dense_9: a external link \(to another file\) is not allowed",
    ),
    "foreign weight": (
        _set_attr("dense_4", "weight_names", np.array([b"dense_4/kernel:0", b"dense_4/gamma:0"])),
        r"/dense_4 holds weight 'dense_4/gamma:0'",
    ),
    "absolute weight path": (
        _set_attr("dense_4", "weight_names", np.array([b"/dense_5/dense_5/kernel:0"])),
        r"missing dataset /dense_4//dense_5/dense_5/kernel:0",
    ),
    "no weight_names": (lambda f: f["dense_1"].attrs.__delitem__("weight_names"), r"/dense_1 has no weight_names"),
    "one layer": (_set_attr("/", "layer_names", np.array([b"dense"])), r"1 Dense layers with weights"),
    "numbers as names": (_set_attr("/", "layer_names", np.arange(3)), r"layer_names must be a list of names"),
    "a layer twice": (_set_attr("/", "layer_names", np.array([b"dense", b"dense"])), r"lists a layer twice"),
    "no layers": (_no_layers, r"no Keras layers"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_files_are_one_line_errors_naming_the_file(tmp_path, case):
    change, cause = HOSTILE[case]
    path = _edit(write_keras_weights(tmp_path / "evil.h5", random_family().initial_weights), change)
    with pytest.raises(NeuralShapesError, match=cause) as error:
        import_keras_file(path)
    message = str(error.value)
    assert message.startswith(str(path)) and "\n" not in message


def test_non_hdf5_and_oversized_files(tmp_path):
    with pytest.raises(NeuralShapesError, match=r"^<bytes>: not a valid Keras weights file"):
        keras_shape_from_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100), name="x")
    with pytest.raises(NeuralShapesError, match="cannot read file"):
        import_keras_file(tmp_path / "absent.h5")
    big = tmp_path / "big.h5"
    with big.open("wb") as f:  # a sparse file: its size is all that is read
        f.truncate(64 << 20)
    with pytest.raises(NeuralShapesError, match="a Keras weights file may have at most"):
        import_keras_file(big)


@pytest.mark.slow
def test_refit_makes_a_default_family_member_that_nf2vec_takes(tmp_path, sphere):
    """``--refit``'s work: the imported net's surface fitted with the default family, in the same frame; two
    such shapes interpolate (the family nf2vec needs)."""
    from backend.fitting.batched import FitSettings
    from backend.fitting.pipeline import refit_in_family
    from backend.shapes.family_file import resolve_family

    write_keras_weights(tmp_path / "ball.h5", sphere)
    imported = import_keras_file(tmp_path / "ball.h5", transform=Similarity(scale=0.5, centre=np.array([1.0, 2, 3])))
    default = resolve_family("default")
    quick = FitSettings(samples=100_000, max_steps=300, eval_every=100)
    refit = refit_in_family(imported, default, quick, resolution=96, check_resolution=64)
    assert refit.family_id == default.family_id and refit.architecture == default.architecture
    assert np.allclose(refit.transform.centre, [1, 2, 3]) and refit.transform.scale == 0.5
    assert refit.provenance["refit_of"].startswith(imported.family_id) and refit.provenance["imported_from"]
    assert refit.metrics["fscore"] > 0.9, refit.metrics  # measured against the imported surface
    write_shape(tmp_path / "a.h5", refit)
    write_shape(tmp_path / "b.h5", refit)
    code, output = _invoke(
        neural_shapes, "interpolate", tmp_path / "a.h5", tmp_path / "b.h5", "-o", tmp_path / "i", "--space", "weights"
    )
    assert code == 0, output
