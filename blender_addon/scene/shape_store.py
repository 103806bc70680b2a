"""Where a neural object's shape lives in the .blend: once per shape, on a shared datablock.

The ``.h5`` bytes and what the Object panel shows of the shape (name, source, family, architecture,
metrics) are ID properties of one hidden Text datablock per shape (``.neural <name>``), found by the
SHA-256 of the bytes. Each neural object points at it (``object.neural_shapes.shape``): duplicates, linked
duplicates and collection instances of one shape share the datablock, so 100 copies store the shape once;
appending or linking an object brings the datablock along (an ID pointer is followed like a mesh).

Files from add-on versions before this one kept the bytes on each object (``obj["neural_shape_h5"]``):
:func:`adopt_legacy` moves them to the shared datablock on load; linked (read-only) objects are read in place.
"""

from __future__ import annotations

import hashlib

import bpy
from bpy.app.handlers import persistent

H5_KEY = "neural_shape_h5"
SHA_KEY = "neural_shape_sha256"
ID_KEY = "neural_shape_id"  # the shape's id on the last service that had it: a cache
INFO_KEYS = ("name", "source", "family_id", "architecture")  # strings shown by the Object panel
METRIC_PREFIX = "metric_"


def shape_datablock(h5: bytes, name: str, info: dict[str, str], metrics: dict[str, float]) -> bpy.types.Text:
    """The shared datablock holding ``h5``: the existing one with these bytes, else a new one with
    ``info`` (keys of :data:`INFO_KEYS`) and ``metrics`` recorded (main thread)."""
    digest = hashlib.sha256(h5).hexdigest()
    for text in bpy.data.texts:
        if text.get(SHA_KEY) == digest and text.library is None:
            return text
    text = bpy.data.texts.new(f".neural {name}")
    text.write(f"Neural shape '{name}' (neural-shapes add-on): its .h5 file is stored on this datablock.\n")
    text[H5_KEY] = h5
    text[SHA_KEY] = digest
    for key in INFO_KEYS:
        text[key] = str(info.get(key, ""))
    for key, value in metrics.items():
        if value is not None:
            text[METRIC_PREFIX + key] = float(value)
    return text


def shape_holder(obj: bpy.types.Object):
    """What holds an object's shape: its shared datablock, the object itself for a legacy one, or None."""
    settings = getattr(obj, "neural_shapes", None)
    text = getattr(settings, "shape", None) if settings is not None else None
    if text is not None and H5_KEY in text:
        return text
    return obj if H5_KEY in obj else None


def shape_bytes(obj: bpy.types.Object) -> bytes:
    """The ``.h5`` bytes of a neural object (KeyError when it is none)."""
    holder = shape_holder(obj)
    if holder is None:
        raise KeyError(f"{obj.name} is not a neural object")
    return bytes(holder[H5_KEY])


def service_id(obj: bpy.types.Object) -> str:
    """The id the shape had on the service last used ("" when none)."""
    holder = shape_holder(obj)
    return str(holder.get(ID_KEY, "")) if holder is not None else ""


def remember_service_id(obj: bpy.types.Object, shape_id: str) -> None:
    """Keep the shape's service id on its holder (not for a holder linked from a library: read-only)."""
    holder = shape_holder(obj)
    if holder is not None and holder.library is None:
        holder[ID_KEY] = shape_id


def shape_digest(obj: bpy.types.Object) -> str:
    """The SHA-256 of a neural object's ``.h5`` bytes (recorded on the shared datablock)."""
    holder = shape_holder(obj)
    if holder is not None and holder is not obj and SHA_KEY in holder:
        return str(holder[SHA_KEY])
    return hashlib.sha256(shape_bytes(obj)).hexdigest()


@persistent
def adopt_legacy_on_load(*_) -> None:
    """``load_post``: files from older versions of the add-on get shared shape datablocks."""
    adopt_legacy(bpy.data.objects)


def shape_info(obj: bpy.types.Object) -> tuple[dict[str, str], dict[str, float]]:
    """The shape's recorded info and metrics, for display (empty for a legacy object without them)."""
    holder = shape_holder(obj)
    if holder is None:
        return {}, {}
    info = {key: str(holder.get(key, "")) for key in INFO_KEYS}
    if holder is obj:
        return info, _legacy_metrics(obj)
    metrics = {k.removeprefix(METRIC_PREFIX): float(v) for k, v in holder.items() if k.startswith(METRIC_PREFIX)}
    return info, metrics


def adopt_legacy(objects) -> int:
    """Move per-object shape bytes (older files) onto shared datablocks; returns how many objects moved.
    Objects linked from a library are left alone (read-only here; :func:`shape_bytes` reads them)."""
    moved = 0
    for obj in objects:
        if obj.library is not None or H5_KEY not in obj or getattr(obj, "neural_shapes", None) is None:
            continue
        name = obj.name.removesuffix(" (neural)")
        obj.neural_shapes.shape = shape_datablock(bytes(obj[H5_KEY]), name, {"name": name}, _legacy_metrics(obj))
        if _is_number(obj.get("neural_resolution")):
            obj.neural_shapes.viewport_resolution = int(obj["neural_resolution"])
        if obj.get(ID_KEY):
            obj.neural_shapes.shape[ID_KEY] = str(obj[ID_KEY])
        for key in [k for k in obj.keys() if k.startswith("neural_")]:
            del obj[key]
        moved += 1
    return moved


def _legacy_metrics(obj: bpy.types.Object) -> dict[str, float]:
    """An older file's fit metrics, kept on the object as ``neural_<metric>`` numbers (the proxy resolution aside)."""
    metrics = {k.removeprefix("neural_"): float(v) for k, v in obj.items() if k.startswith("neural_") and _is_number(v)}
    metrics.pop("resolution", None)
    return metrics


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
