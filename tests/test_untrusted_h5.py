"""Hostile .h5 files (backend.shapes.h5_io.check_structure): each trick HDF5 allows and our writers never use is
refused in one line naming the path in the file, before any data is read; also through the service."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from pydantic import ValidationError

from backend.errors import NeuralShapesError
from backend.service.api.schemas import ArchitectureCreate
from backend.shapes.architecture import MAX_HIDDEN_LAYERS, MAX_PARAMETERS, MAX_WIDTH, Architecture, random_family
from backend.shapes.family_file import family_to_bytes, read_family
from backend.shapes.h5_io import MAX_OBJECTS, MAX_TEXT_BYTES
from backend.shapes.shape_file import read_shape, shape_to_bytes
from blender_addon.client import ServiceError
from tests.conftest import run_cli
from tests.service_server import ServerProcess
from tests.test_shape_file import make_shape

pytestmark = pytest.mark.service

WEIGHT = "weights"  # the flat weights of the default architecture: 7,553 float32, 30,212 bytes
WEIGHT_SHAPE = (7553,)
WEIGHT_BYTES = 30_212


@pytest.fixture
def secret(tmp_path) -> Path:
    """A local file a hostile shape would like to copy: bytes that read as finite float32s, as many as the weights."""
    path = tmp_path / "secret-token"
    path.write_bytes(np.random.default_rng(7).uniform(-1, 1, WEIGHT_SHAPE).astype(np.float32).tobytes())
    return path


def hostile(tmp_path: Path, edit: Callable[[h5py.File], None], data: bytes | None = None) -> Path:
    """A valid default shape file (or ``data``) changed by ``edit``."""
    path = tmp_path / "hostile.h5"
    path.write_bytes(data if data is not None else shape_to_bytes(make_shape()))
    with h5py.File(path, "a") as f:
        edit(f)
    return path


def refused(path: Path, read: Callable[[Path], object] = read_shape) -> str:
    with pytest.raises(NeuralShapesError) as error:
        read(path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return message


def external_storage(secret: Path, weight: str = WEIGHT) -> Callable[[h5py.File], None]:
    """The exploit of issue 13: weights whose bytes are stored in another (local) file."""

    def edit(f: h5py.File) -> None:
        del f[weight]
        f.create_dataset(weight, shape=WEIGHT_SHAPE, dtype="f4", external=[(str(secret), 0, WEIGHT_BYTES)])

    return edit


def test_external_storage_is_refused_and_the_secret_never_read(tmp_path, secret):
    path = hostile(tmp_path, external_storage(secret))
    with h5py.File(path, "r") as f:  # the file is well formed: plain h5py reads the secret through it
        assert f[WEIGHT][()].tobytes() == secret.read_bytes()
    message = refused(path)
    assert f"{WEIGHT}: data stored in an external file is not allowed" in message
    assert str(secret) not in message


def test_links_are_refused(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.zeros(WEIGHT_SHAPE, np.float32)

    def replace_weight(link) -> Callable[[h5py.File], None]:
        def edit(f: h5py.File) -> None:
            del f[WEIGHT]
            f[WEIGHT] = link(f)

        return edit

    cases = [
        (lambda f: h5py.ExternalLink(str(other), "/data"), "external link (to another file) is not allowed"),
        (lambda f: h5py.SoftLink("/provenance"), "soft link is not allowed"),
    ]
    for link, reason in cases:
        assert f"{WEIGHT}: a {reason}" in refused(hostile(tmp_path, replace_weight(link)))
    # A second hard link to one object (here a group linked into itself: a cycle).
    message = refused(hostile(tmp_path, lambda f: f["provenance"].__setitem__("loop", f["provenance"])))
    assert "provenance: an object with 2 hard links (one allowed)" in message


def test_virtual_dataset_is_refused(tmp_path, secret):
    source = tmp_path / "source.h5"
    with h5py.File(source, "w") as f:
        f["data"] = np.frombuffer(secret.read_bytes(), np.float32)

    def edit(f: h5py.File) -> None:
        del f[WEIGHT]
        layout = h5py.VirtualLayout(shape=WEIGHT_SHAPE, dtype="f4")
        layout[:] = h5py.VirtualSource(str(source), "data", shape=WEIGHT_SHAPE)
        f.create_virtual_dataset(WEIGHT, layout)

    assert f"{WEIGHT}: a virtual dataset" in refused(hostile(tmp_path, edit))


@pytest.mark.parametrize(
    "options, name",
    [
        ({"compression": "lzf"}, "lzf"),
        ({"compression": "gzip", "shuffle": True}, "shuffle"),
        ({"fletcher32": True}, "fletcher32"),
        ({"scaleoffset": 10}, "scaleoffset"),
    ],
)
def test_filters_other_than_gzip_are_refused(tmp_path, options, name):
    def edit(f: h5py.File) -> None:
        values = f[WEIGHT][()]
        del f[WEIGHT]
        f.create_dataset(WEIGHT, data=values, **options)

    assert f"{WEIGHT}: the '{name}' filter is not allowed (only gzip)" in refused(hostile(tmp_path, edit))


def test_gzip_weights_are_accepted(tmp_path):
    def edit(f: h5py.File) -> None:
        values = f[WEIGHT][()]
        del f[WEIGHT]
        f.create_dataset(WEIGHT, data=values, compression="gzip", chunks=(1024,))
        f[WEIGHT].attrs.update(metrics)

    metrics = make_shape().metrics
    shape = read_shape(hostile(tmp_path, edit))
    np.testing.assert_array_equal(shape.weights[1][0], make_shape().weights[1][0])


def test_unwritten_data_is_refused(tmp_path):
    def never_written(f: h5py.File) -> None:
        del f[WEIGHT]
        f.create_dataset(WEIGHT, shape=WEIGHT_SHAPE, dtype="f4")

    def half_written(f: h5py.File) -> None:
        del f[WEIGHT]
        f.create_dataset(WEIGHT, shape=WEIGHT_SHAPE, dtype="f4", chunks=(4096,))[:4096] = 0.5

    assert f"{WEIGHT}: stores 0 bytes but declares {WEIGHT_BYTES:,}" in refused(hostile(tmp_path, never_written))
    assert f"{WEIGHT}: 1 of its 2 chunks are stored" in refused(hostile(tmp_path, half_written))


def test_gzip_bomb_is_refused_before_decompression(tmp_path):
    """2 GiB of float32 zeros in 32 gzip chunks of 64 MiB: about 2 MB on disk."""
    chunk_values = 1 << 24
    packer = zlib.compressobj()
    block = b"".join(packer.compress(bytes(1 << 20)) for _ in range(64)) + packer.flush()

    def edit(f: h5py.File) -> None:
        bomb = f.create_dataset(
            "padding", shape=(32 * chunk_values,), dtype="f4", chunks=(chunk_values,), compression="gzip"
        )
        for index in range(32):
            bomb.id.write_direct_chunk((index * chunk_values,), block)

    path = hostile(tmp_path, edit)
    assert path.stat().st_size < 4_000_000
    assert "padding: declares 2,147,483,648 bytes; a file may hold at most" in refused(path)


def test_attributes_are_bounded(tmp_path):
    cases = [
        (
            lambda f: f["provenance"].attrs.__setitem__("notes", "x" * (MAX_TEXT_BYTES + 1)),
            f"/provenance attribute 'notes': text of {MAX_TEXT_BYTES + 1} bytes",
        ),
        (lambda f: f[WEIGHT].attrs.__setitem__("many", np.zeros(1000)), "/weights attribute 'many': shape (1000,)"),
        (lambda f: f.attrs.__setitem__("ref", f["weights"].ref), "/ attribute 'ref': type object"),
    ]
    for edit, reason in cases:
        assert reason.lstrip("/") in refused(hostile(tmp_path, edit))


def test_too_many_objects_are_refused(tmp_path):
    def edit(f: h5py.File) -> None:
        junk = f.create_group("junk")
        for index in range(MAX_OBJECTS):
            junk.create_group(str(index))

    assert f"more than {MAX_OBJECTS} groups and datasets" in refused(hostile(tmp_path, edit))


@pytest.mark.parametrize(
    "hidden, width, reason",
    [
        (1, 2 * MAX_WIDTH, f"width 2,048 > {MAX_WIDTH:,}"),
        (5, MAX_WIDTH, f"parameters 4,203,521 > {MAX_PARAMETERS:,}"),
        (MAX_HIDDEN_LAYERS + 1, 8, f"must list 3 to {MAX_HIDDEN_LAYERS + 2} integer sizes"),
    ],
)
def test_the_network_size_limits_of_fitting_apply_to_files(tmp_path, hidden, width, reason):
    def edit(f: h5py.File) -> None:
        f.attrs["layer_sizes"] = np.array([3] + [width] * hidden + [1])

    message = refused(hostile(tmp_path, edit))
    assert "layer_sizes" in message and reason in message
    with pytest.raises(ValueError, match="too large"):
        Architecture(hidden_layers=hidden, width=width)


def test_the_fit_api_takes_the_same_limits():
    assert ArchitectureCreate(hidden_layers=4, width=MAX_WIDTH).width == MAX_WIDTH
    assert ArchitectureCreate(hidden_layers=MAX_HIDDEN_LAYERS, width=32).hidden_layers == MAX_HIDDEN_LAYERS
    too_many = {"hidden_layers": MAX_HIDDEN_LAYERS, "width": MAX_WIDTH}  # each within its bound, 64 M parameters
    for too_large in ({"width": MAX_WIDTH + 1}, {"hidden_layers": MAX_HIDDEN_LAYERS + 1}, too_many):
        with pytest.raises(ValidationError):
            ArchitectureCreate(**too_large)


def test_cli_fit_refuses_a_network_over_the_limit(tmp_path):
    result = run_cli("fit", tmp_path / "absent.obj", "-o", tmp_path / "out", "--width", "2048")
    assert result.returncode != 0 and "width 2,048 > 1,024" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_family_files_are_checked_alike(tmp_path, secret):
    weight = "initial_weights"
    path = hostile(tmp_path, external_storage(secret, weight), family_to_bytes(random_family(Architecture(), seed=3)))
    assert f"{weight}: data stored in an external file" in refused(path, read_family)


# --- through the service -------------------------------------------------------------------------


def test_service_import_of_the_exploit_answers_4xx_and_stores_nothing(tmp_path, secret):
    server = ServerProcess(tmp_path / "data")
    try:
        data = hostile(tmp_path, external_storage(secret)).read_bytes()
        with pytest.raises(ServiceError) as error:
            server.client.import_shape(data)
        assert 400 <= error.value.status < 500 and len(error.value.detail.splitlines()) == 1
        assert f"{WEIGHT}: data stored in an external file is not allowed" in error.value.detail
        assert server.client.shapes(limit=10) == []
    finally:
        server.stop()
    piece = secret.read_bytes()[:64]
    stored = [path for path in (tmp_path / "data").rglob("*") if path.is_file() and piece in path.read_bytes()]
    assert stored == [] and str(secret) not in error.value.detail
