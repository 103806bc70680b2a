"""The ``.h5`` model family file: architecture, shared initial weights and, for meta-learned families,
the Meta-SGD inner learning rates and step count. Written atomically, validated on load like shape
files (see docs/format.md). Also names the families every install has: the bundled meta-learned
default and the seeded random initialisations.
"""

from __future__ import annotations

import io
from pathlib import Path

import h5py

from backend.errors import NeuralShapesError
from backend.files import read_file_bytes, write_atomically
from backend.shapes import h5_io
from backend.shapes.architecture import Architecture, ModelFamily, random_family

FORMAT_NAME = "neural-shapes/model-family"
FORMAT_VERSION = 2  # written; version 1 (docs/format.md) is still read
READABLE_VERSIONS = (1, 2)
MAX_INNER_STEPS = 1000
BUNDLED_DIR = Path(__file__).resolve().parent / "families"
DEFAULT_FAMILY_FILE = BUNDLED_DIR / "default.h5"
RANDOM_PREFIX = "random"


def family_to_bytes(family: ModelFamily) -> bytes:
    buffer = io.BytesIO()
    with h5_io.new_h5_file(buffer) as f:
        f.attrs["format"] = h5_io.text_value(FORMAT_NAME)
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["name"] = h5_io.text_value(family.name)
        f.attrs["family_id"] = h5_io.text_value(family.family_id)
        f.attrs["inner_steps"] = int(family.inner_steps)
        f.attrs["inner_batch"] = int(family.inner_batch)
        h5_io.write_architecture(f, family.architecture)
        h5_io.write_weights(f, "initial_weights", family.initial_weights)
        if family.inner_learning_rates is not None:
            h5_io.write_weights(f, "inner_learning_rates", family.inner_learning_rates)
        h5_io.write_text_attrs(h5_io.new_group(f, "provenance"), family.provenance)
    return buffer.getvalue()


def write_family(path: Path, family: ModelFamily) -> None:
    """Write a family file atomically (temporary file + rename)."""
    write_atomically(Path(path), family_to_bytes(family))


def read_family(path: Path) -> ModelFamily:
    """Read and validate a family file; :class:`NeuralShapesError` names the file and what is wrong."""
    return h5_io.parse_h5(read_file_bytes(path), str(path), "model family", _read)


def _read(f: h5py.File) -> ModelFamily:
    version = h5_io.check_format(f, FORMAT_NAME, READABLE_VERSIONS, "model family")
    name = h5_io.text(h5_io.attr(f, "name", ""), "name")
    if version == 1:  # the architecture in a group of its own, weights per layer
        architecture = h5_io.read_architecture(h5_io.group(f, "architecture"), "architecture")
        read = h5_io.read_layered_weights
    else:
        architecture = h5_io.read_architecture(f)
        read = h5_io.read_weights
    initial = read(f, "initial_weights", architecture)
    rates = read(f, "inner_learning_rates", architecture) if "inner_learning_rates" in f else None
    steps = int(h5_io.number(h5_io.attr(f, "inner_steps", ""), "inner_steps"))
    batch = int(h5_io.number(h5_io.attr(f, "inner_batch", ""), "inner_batch"))
    if not 0 <= steps <= MAX_INNER_STEPS or batch < 0 or (steps > 0 and (rates is None or batch == 0)):
        raise NeuralShapesError(
            f"inner_steps {steps} / inner_batch {batch} do not match the stored inner learning rates"
        )
    provenance = h5_io.read_text_attrs(f["provenance"], "provenance", ()) if "provenance" in f else {}
    family = ModelFamily(name, architecture, initial, rates, steps, batch, provenance)
    stored_id = h5_io.text(h5_io.attr(f, "family_id", ""), "family_id")
    if stored_id != family.family_id:  # the id is a hash of the weights: a mismatch means altered weights
        raise NeuralShapesError(f"family_id {stored_id} does not match its weights ({family.family_id})")
    return family


def bundled_family(family_id: str) -> ModelFamily | None:
    """The family shipped with the tool whose id is ``family_id``, or None."""
    for path in sorted(BUNDLED_DIR.glob("*.h5")):
        family = read_family(path)
        if family.family_id == family_id:
            return family
    return None


def resolve_family(spec: str | Path | None, architecture: Architecture = Architecture()) -> ModelFamily:
    """The family a fit starts from.

    ``None`` or ``"default"``: the bundled meta-learned family (for the default architecture; other
    architectures fall back to ``random``); ``"random"`` or ``"random:SEED"``: the seeded random shared
    initialisation of ``architecture``; anything else: a family file path.
    """
    spec = "default" if spec is None else str(spec)
    if spec == "default":
        return read_family(DEFAULT_FAMILY_FILE) if architecture == Architecture() else random_family(architecture, 0)
    if spec == RANDOM_PREFIX or spec.startswith(RANDOM_PREFIX + ":"):
        seed_text = spec.partition(":")[2] or "0"
        if not seed_text.isdigit():
            raise NeuralShapesError(f"family '{spec}': the seed after 'random:' must be a non-negative integer")
        return random_family(architecture, int(seed_text))
    family = read_family(Path(spec))
    if family.architecture != architecture and architecture != Architecture():
        raise NeuralShapesError(
            f"{spec}: the family's architecture {family.architecture.describe()} is not the requested {architecture.describe()}"
        )
    return family
