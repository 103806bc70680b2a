"""Pieces shared by the project's ``.h5`` formats (neural shapes, model families): the architecture and
weights groups, and validated reads of attributes and datasets.

Shape and family files come from other people (API imports, .blend files, the CLI), so :func:`parse_h5`
first walks the whole file and refuses, before any value is read, everything HDF5 can do that our
writers never do and a hostile file could use: links to other objects or files, data stored in other
files (a local file's bytes would come back as "weights"), virtual datasets, filters other than gzip,
non-numeric datasets, datasets whose stored size is not their declared size (unwritten data, gzip
bombs), and more objects, data or attribute text than any real file holds. Then the readers touch only
numeric datasets and string / number attributes and check each one; nothing is ever unpickled.
Failures raise :class:`NeuralShapesError` with a message naming the offending path.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import TypeVar

import h5py
import numpy as np

from backend.errors import NeuralShapesError
from backend.shapes.architecture import (
    ACTIVATIONS,
    MAX_HIDDEN_LAYERS,
    MAX_PARAMETERS,
    OUTPUT_ACTIVATIONS,
    Architecture,
    Weights,
    flatten,
    unflatten,
)

T = TypeVar("T")

# What a file may hold at most. The largest legal file (a meta-learned family of MAX_PARAMETERS: weights
# and as many learning rates, float32, 62 hidden layers) has ~260 objects and 32 MB of data.
MAX_OBJECTS = 1024  # groups and datasets
MAX_DEPTH = 8  # nested groups (ours nest 1 deep, 3 in format version 1)
MAX_ATTRIBUTES = 4096
MAX_ATTRIBUTE_ELEMENTS = 256  # values in one attribute (layer sizes: at most 64)
MAX_TEXT_BYTES = 1 << 20  # one string attribute (a family's provenance holds its meta-training history)
MAX_DATA_BYTES = 2 * 4 * MAX_PARAMETERS + (1 << 20)  # declared bytes of all datasets together
MAX_CHUNKS = 65_536  # chunks of all datasets together (each costs an index lookup)
COMPACT_ATTRIBUTES = 32  # attributes an object we write keeps in its own header
_LINK_KINDS = {h5py.h5l.TYPE_SOFT: "soft link", h5py.h5l.TYPE_EXTERNAL: "external link (to another file)"}


def parse_h5(data: bytes, source: str, what: str, reader: Callable[[h5py.File], T]) -> T:
    """Check the structure of the HDF5 file in ``data`` (:func:`check_structure`), then run ``reader``
    on it; any failure becomes one line naming ``source``."""
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            check_structure(f)
            return reader(f)
    except NeuralShapesError as error:
        raise NeuralShapesError(f"{source}: {error}") from None
    except Exception as error:  # h5py raises OSError/KeyError/ValueError for damaged files
        raise NeuralShapesError(
            f"{source}: not a valid {what} file ({type(error).__name__}: {error})".splitlines()[0]
        ) from None


class _Budget:
    """What the walk has counted so far, against the MAX_* limits."""

    def __init__(self) -> None:
        self.objects = self.attributes = self.data_bytes = self.chunks = 0


def check_structure(f: h5py.File) -> None:
    """Walk every link, object and attribute of ``f`` without reading any dataset; refuse (one line
    naming the path and the reason) what only a foreign or hostile file holds. See the module docstring."""
    _check_object(f, "", 0, _Budget())


def _check_object(obj: h5py.HLObject, where: str, depth: int, budget: _Budget) -> None:
    shown = where or "/"
    budget.objects += 1
    if budget.objects > MAX_OBJECTS:
        raise NeuralShapesError(f"{shown}: more than {MAX_OBJECTS} groups and datasets")
    info = h5py.h5o.get_info(obj.id)
    if info.rc != 1:  # our writers link each object once; several hard links can make cycles
        raise NeuralShapesError(f"{shown}: an object with {info.rc} hard links (one allowed)")
    _check_attributes(obj, shown, info.num_attrs, budget)
    if isinstance(obj, h5py.Dataset):
        _check_dataset(obj, shown, budget)
        return
    if not isinstance(obj, h5py.Group):
        raise NeuralShapesError(f"{shown}: a {type(obj).__name__} (only groups and datasets are allowed)")
    if depth >= MAX_DEPTH:
        raise NeuralShapesError(f"{shown}: groups nested deeper than {MAX_DEPTH}")
    for name in obj:  # one link at a time: a group with millions of links stops at the object limit
        path = f"{where}/{name}" if where else name
        kind = obj.id.links.get_info(name.encode()).type
        if kind != h5py.h5l.TYPE_HARD:
            raise NeuralShapesError(f"{path}: a {_LINK_KINDS.get(kind, 'user-defined link')} is not allowed")
        _check_object(obj[name], path, depth + 1, budget)


def _check_attributes(obj: h5py.HLObject, where: str, count: int, budget: _Budget) -> None:
    budget.attributes += count
    if budget.attributes > MAX_ATTRIBUTES:
        raise NeuralShapesError(f"{where}: more than {MAX_ATTRIBUTES} attributes in the file")
    for name in obj.attrs:
        path = f"{where} attribute '{name}'"
        stored = obj.attrs.get_id(name)
        shape, dtype = stored.shape, stored.dtype
        if shape is None or len(shape) > 1 or math.prod(shape) > MAX_ATTRIBUTE_ELEMENTS:
            raise NeuralShapesError(f"{path}: shape {shape} (one value or a list of at most {MAX_ATTRIBUTE_ELEMENTS})")
        string = h5py.check_string_dtype(dtype)
        if string is None:
            if dtype.kind not in "iuf" or h5py.check_enum_dtype(dtype) is not None:
                raise NeuralShapesError(f"{path}: type {dtype} (only numbers and text are allowed)")
        elif string.length is not None:  # fixed-length text: its size is known without reading it
            if string.length > MAX_TEXT_BYTES:
                raise NeuralShapesError(f"{path}: text of {string.length} bytes (at most {MAX_TEXT_BYTES})")
        else:  # variable-length text lives in the file's heap: reading costs at most the file's size
            values = np.asarray(obj.attrs[name], dtype=object).reshape(-1)
            longest = max((len(value.encode() if isinstance(value, str) else value) for value in values), default=0)
            if longest > MAX_TEXT_BYTES:
                raise NeuralShapesError(f"{path}: text of {longest} bytes (at most {MAX_TEXT_BYTES})")


def _check_dataset(dataset: h5py.Dataset, where: str, budget: _Budget) -> None:
    plist = dataset.id.get_create_plist()
    layout = plist.get_layout()
    if layout == h5py.h5d.VIRTUAL:
        raise NeuralShapesError(f"{where}: a virtual dataset (data mapped from other datasets or files) is not allowed")
    if plist.get_external_count():
        raise NeuralShapesError(f"{where}: data stored in an external file is not allowed")
    filters = [plist.get_filter(index) for index in range(plist.get_nfilters())]
    for code, _flags, _values, name in filters:
        if code != h5py.h5z.FILTER_DEFLATE:
            raise NeuralShapesError(f"{where}: the '{name.decode(errors='replace')}' filter is not allowed (only gzip)")
    shape, dtype = dataset.shape, dataset.dtype
    if shape is None or dtype.kind not in "iuf" or h5py.check_enum_dtype(dtype) is not None:
        raise NeuralShapesError(
            f"{where}: a dataset of type {dtype} and shape {shape} (only arrays of numbers are allowed)"
        )
    declared = math.prod(shape) * dtype.itemsize
    budget.data_bytes += declared
    if budget.data_bytes > MAX_DATA_BYTES:
        raise NeuralShapesError(
            f"{where}: declares {declared:,} bytes; a file may hold at most {MAX_DATA_BYTES:,} bytes of data"
        )
    stored = dataset.id.get_storage_size()
    if layout == h5py.h5d.CHUNKED:
        chunk = plist.get_chunk()
        expected = math.prod(math.ceil(size / side) for size, side in zip(shape, chunk))
        budget.chunks += expected
        if budget.chunks > MAX_CHUNKS:
            raise NeuralShapesError(f"{where}: more than {MAX_CHUNKS} chunks in the file")
        written = dataset.id.get_num_chunks()
        if written != expected:  # unwritten chunks read as the fill value: data that was never stored
            raise NeuralShapesError(f"{where}: {written} of its {expected} chunks are stored")
        if not filters and stored != expected * math.prod(chunk) * dtype.itemsize:
            raise NeuralShapesError(
                f"{where}: stores {stored:,} bytes in chunks that hold {expected * math.prod(chunk) * dtype.itemsize:,}"
            )
    elif stored != declared:  # contiguous or compact: zero when never written
        raise NeuralShapesError(f"{where}: stores {stored:,} bytes but declares {declared:,}")


def new_h5_file(buffer: io.BytesIO) -> h5py.File:
    """An ``.h5`` file for writing into ``buffer``, laid out compactly: HDF5's newest object headers
    (``libver="latest"``, readable by HDF5 1.10 and later) take about a third less space than the
    default ones, and the root keeps its attributes in its own header (:func:`_compact_attributes`)."""
    access = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    access.set_fileobj_driver(h5py.h5fd.fileobj_driver, buffer)
    access.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    creation = _compact_attributes(h5py.h5p.create(h5py.h5p.FILE_CREATE))
    return h5py.File(h5py.h5f.create(b"in-memory", h5py.h5f.ACC_TRUNC, fcpl=creation, fapl=access))


def new_group(parent: h5py.Group, name: str) -> h5py.Group:
    """A group whose attributes stay in its own header (:func:`_compact_attributes`)."""
    creation = _compact_attributes(h5py.h5p.create(h5py.h5p.GROUP_CREATE))
    return h5py.Group(h5py.h5g.create(parent.id, name.encode(), gcpl=creation))


def _compact_attributes(creation: h5py.h5p.PropOCID) -> h5py.h5p.PropOCID:
    """Up to COMPACT_ATTRIBUTES attributes in the object's header: past HDF5's default of 8 they move to a
    heap and an index of their own, 1.8 kB, which matters in files of 30 kB of weights."""
    creation.set_attr_phase_change(COMPACT_ATTRIBUTES, COMPACT_ATTRIBUTES - 1)
    return creation


def text_value(value: str) -> np.ndarray:
    """A text attribute as fixed-length UTF-8: variable-length text would go to the file's global heap,
    whose first collection alone takes 4 kB."""
    encoded = str(value).encode("utf-8")
    return np.array(encoded, dtype=h5py.string_dtype("utf-8", max(len(encoded), 1)))


def attr(group: h5py.Group, key: str, where: str):
    if key not in group.attrs:
        raise NeuralShapesError(f"missing {where}/{key}")
    return group.attrs[key]


def group(f: h5py.Group, key: str) -> h5py.Group:
    if key not in f or not isinstance(f[key], h5py.Group):
        raise NeuralShapesError(f"missing group '{key}'")
    return f[key]


def text(value, where: str) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise NeuralShapesError(f"{where} must be text")
    return value


def number(value, where: str, allow_infinite: bool = False, allow_nan: bool = False) -> float:
    array = np.asarray(value)
    valid = array.shape == () and np.issubdtype(array.dtype, np.number)
    if not valid or (np.isnan(array) and not allow_nan) or (np.isinf(array) and not allow_infinite):
        raise NeuralShapesError(f"{where} must be one {'' if allow_infinite else 'finite '}number")
    return float(array)


def check_format(f: h5py.File, format_name: str, versions: tuple[int, ...], what: str) -> int:
    """The root's ``format`` and ``format_version`` attributes must name this format and one of ``versions``;
    returns the version."""
    if text(attr(f, "format", ""), "format") != format_name:
        raise NeuralShapesError(f"not a {what} file (format is not '{format_name}')")
    found = int(number(attr(f, "format_version", ""), "format_version"))
    if found not in versions:
        readable = " and ".join(str(version) for version in versions)
        raise NeuralShapesError(f"format version {found} is not supported (this tool reads version {readable})")
    return found


def write_architecture(holder: h5py.Group, architecture: Architecture) -> None:
    """The architecture as attributes of ``holder`` (the root since format version 2)."""
    holder.attrs["layer_sizes"] = np.asarray(architecture.layer_sizes, dtype=np.int64)
    holder.attrs["activation"] = text_value(architecture.activation)
    holder.attrs["output_activation"] = text_value(architecture.output_activation)
    holder.attrs["sine_w0"] = float(architecture.sine_w0)


def read_architecture(holder: h5py.Group, where: str = "") -> Architecture:
    """The architecture in the attributes of ``holder``, whose path ``where`` error messages name."""
    path = f"{where}/" if where else ""
    sizes = np.asarray(attr(holder, "layer_sizes", where))
    if sizes.ndim != 1 or not 3 <= len(sizes) <= MAX_HIDDEN_LAYERS + 2 or not np.issubdtype(sizes.dtype, np.integer):
        raise NeuralShapesError(f"{path}layer_sizes must list 3 to {MAX_HIDDEN_LAYERS + 2} integer sizes")
    width = int(sizes[1])
    if sizes[0] != 3 or sizes[-1] != 1 or not (sizes[1:-1] == width).all() or width < 1:
        raise NeuralShapesError(f"{path}layer_sizes {sizes.tolist()} is not 3 -> equal hidden widths -> 1")
    activation = text(attr(holder, "activation", where), f"{path}activation")
    output_activation = text(attr(holder, "output_activation", where), f"{path}output_activation")
    if activation not in ACTIVATIONS or output_activation not in OUTPUT_ACTIVATIONS:
        raise NeuralShapesError(f"unknown activation '{activation}' or output activation '{output_activation}'")
    try:  # the architecture enforces the size limits that fitting has too
        return Architecture(
            hidden_layers=len(sizes) - 2,
            width=width,
            activation=activation,
            output_activation=output_activation,
            sine_w0=number(attr(holder, "sine_w0", where), f"{path}sine_w0"),
        )
    except ValueError as error:
        raise NeuralShapesError(f"{path}layer_sizes: {error}") from None


def write_weights(f: h5py.Group, name: str, weights: Weights, dtype: type = np.float32) -> h5py.Dataset:
    """One flat dataset ``name`` (P,): per layer the weight (out, in) row-major, then the bias (out,), as
    ``torch.nn.Linear`` stores them (:func:`backend.shapes.architecture.flatten`)."""
    creation = _compact_attributes(h5py.h5p.create(h5py.h5p.DATASET_CREATE))
    return f.create_dataset(name, data=flatten(weights).astype(dtype), dcpl=creation)


def read_weights(f: h5py.Group, name: str, architecture: Architecture) -> Weights:
    """Weights of ``architecture`` from the flat dataset ``name``: its length, a float dtype, finite values."""
    if name not in f or not isinstance(f[name], h5py.Dataset):
        raise NeuralShapesError(f"missing dataset {name}")
    values = _float_values(f[name], name, (architecture.parameter_count,))
    return unflatten(architecture, values)


def read_layered_weights(f: h5py.Group, name: str, architecture: Architecture) -> Weights:
    """Weights of format version 1 files, ``name/layer_NN/{weight, bias}``: exact layer set, shapes, float
    dtypes, finite values."""
    w = group(f, name)
    sizes = architecture.layer_sizes
    expected = [f"layer_{i:02d}" for i in range(len(sizes) - 1)]
    if sorted(w.keys()) != expected:
        raise NeuralShapesError(f"{name} must hold exactly {len(expected)} layers for layer sizes {sizes}")
    weights: Weights = []
    for layer, key in enumerate(expected):
        fan_in, fan_out = sizes[layer], sizes[layer + 1]
        weight = _layer_dataset(w[key], f"{name}/{key}", "weight", (fan_out, fan_in))
        bias = _layer_dataset(w[key], f"{name}/{key}", "bias", (fan_out,))
        weights.append((weight, bias))
    return weights


def _layer_dataset(layer: h5py.Group, where: str, key: str, shape: tuple[int, ...]) -> np.ndarray:
    where = f"{where}/{key}"
    if not isinstance(layer, h5py.Group) or key not in layer or not isinstance(layer[key], h5py.Dataset):
        raise NeuralShapesError(f"missing dataset {where}")
    return _float_values(layer[key], where, shape)


def _float_values(dataset: h5py.Dataset, where: str, shape: tuple[int, ...]) -> np.ndarray:
    if dataset.shape != shape:
        raise NeuralShapesError(f"{where} has shape {dataset.shape}, expected {shape}")
    if dataset.dtype not in (np.float16, np.float32):
        raise NeuralShapesError(f"{where} has dtype {dataset.dtype}, expected float32 or float16")
    values = dataset[()].astype(np.float32)
    if not np.isfinite(values).all():
        raise NeuralShapesError(f"{where} holds NaN or infinite values")
    return values


def write_text_attrs(g: h5py.Group, values: dict[str, str]) -> None:
    for key, value in values.items():
        g.attrs[key] = text_value(value)


def read_text_attrs(g: h5py.Group, where: str, required: tuple[str, ...]) -> dict[str, str]:
    values = {key: text(g.attrs[key], f"{where}/{key}") for key in g.attrs}
    missing = [key for key in required if key not in values]
    if missing:
        raise NeuralShapesError(f"{where} lacks {', '.join(missing)}")
    return values
