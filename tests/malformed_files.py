"""Malformed mesh and shape files for the loader fuzzing (tests/test_fuzz_loaders.py, bench/fuzz_loaders.py)
and the glTF builders of tests/test_mesh_hardening.py.

Generation is structure-aware: hypothesis draws a base mesh, one defect class of real collections
(open, self-intersecting, non-manifold, degenerate, NaN / inf, out-of-range indices, empty ...), an
encoding with its own defects (counts in headers that lie or are huge, wrong magic) and a byte-level
damage (truncation, flipped bytes, random bytes). Bulk randomness (which bytes, which faces) comes
from a numpy generator seeded by a drawn integer, so examples stay cheap to draw and replay.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import struct
from collections.abc import Callable

import h5py
import numpy as np
import trimesh
from hypothesis import strategies as st

MESH_FORMATS = ("obj", "ply-ascii", "ply-binary", "stl-ascii", "stl-binary", "off", "glb")
FORMATS = (*MESH_FORMATS, "h5")
GEOMETRY_DEFECTS = (
    "none",
    "open",
    "self-intersecting",
    "non-manifold",
    "degenerate",
    "nan",
    "inf",
    "out-of-range",
    "negative-index",
    "no-faces",
    "no-vertices",
    "coincident",
    "huge-coordinates",
    "tiny-coordinates",
    "duplicate-faces",
    "flipped",
    "many-faces",
)
COUNT_LIES = ("true", "more", "fewer", "huge", "negative")
DAMAGE = ("none", "none", "truncate", "flip", "insert", "random", "empty", "wrong-magic")


def triangle_grid(faces: int) -> tuple[np.ndarray, np.ndarray]:
    """A strip of ``faces`` non-degenerate triangles inside the unit square: vertices (faces + 2, 3)
    float32, faces (faces, 3) uint32."""
    i = np.arange(faces + 2)
    vertices = np.stack([i / (faces + 1), i % 2, np.zeros(len(i))], axis=1).astype(np.float32)
    strip = np.arange(faces)
    return vertices, np.stack([strip, strip + 1, strip + 2], axis=1).astype(np.uint32)


def gltf_parts(
    vertices: np.ndarray, faces: np.ndarray, *, nodes: list[dict] | None = None, roots: list[int] | None = None
) -> tuple[dict, bytes]:
    """A glTF document with one mesh (float32 positions, uint32 indices in buffer 0) and its binary buffer.

    ``nodes`` default to one node showing the mesh; ``roots`` (the scene's nodes) default to every node.
    """
    positions = np.ascontiguousarray(vertices, dtype="<f4").tobytes()
    indices = np.ascontiguousarray(faces, dtype="<u4").tobytes()
    nodes = [{"mesh": 0}] if nodes is None else nodes
    document = {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": len(positions) + len(indices)}],
        "bufferViews": [
            {"buffer": 0, "byteLength": len(positions)},
            {"buffer": 0, "byteOffset": len(positions), "byteLength": len(indices)},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": len(vertices), "type": "VEC3"},
            {"bufferView": 1, "componentType": 5125, "count": int(np.size(faces)), "type": "SCALAR"},
        ],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
        "nodes": nodes,
        "scenes": [{"nodes": list(range(len(nodes))) if roots is None else roots}],
        "scene": 0,
    }
    return document, positions + indices


def glb_bytes(document: dict, binary: bytes = b"") -> bytes:
    """A GLB container: the JSON chunk, then ``binary`` as the BIN chunk (none when empty)."""
    text = json.dumps(document).encode()
    text += b" " * (-len(text) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text
    if binary:
        binary += b"\0" * (-len(binary) % 4)
        body += struct.pack("<II", len(binary), 0x004E4942) + binary
    return struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body


# --- geometry ---------------------------------------------------------------------------------------

_BASES = [
    (np.asarray(m.vertices, dtype=np.float64), np.asarray(m.faces, dtype=np.int64))
    for m in (trimesh.creation.box(), trimesh.creation.icosahedron(), trimesh.creation.icosphere(1))
]


def defective_mesh(base: int, defect: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (v, 3) float64 and faces (f, 3) int64 of a closed base mesh with one defect applied."""
    v, f = (a.copy() for a in _BASES[base % len(_BASES)])
    if defect == "open":
        f = np.delete(f, rng.choice(len(f), size=rng.integers(1, len(f)), replace=False), axis=0)
    elif defect == "self-intersecting":
        v, f = np.concatenate([v, v + rng.uniform(-0.4, 0.4, 3)]), np.concatenate([f, f + len(v)])
    elif defect == "non-manifold":  # a third face on an existing edge
        v = np.concatenate([v, [[3.0, 3.0, 3.0]]])
        f = np.concatenate([f, [[f[0, 0], f[0, 1], len(v) - 1]]])
    elif defect == "degenerate":
        picks = rng.choice(len(f), size=rng.integers(1, len(f) + 1), replace=False)
        f[picks, 2] = f[picks, 1]
    elif defect in ("nan", "inf"):
        value = np.nan if defect == "nan" else rng.choice([np.inf, -np.inf])
        v[rng.integers(len(v)), rng.integers(3)] = value
    elif defect == "out-of-range":
        f[rng.integers(len(f)), rng.integers(3)] = len(v) + rng.choice([0, 1, 2**31 - 1, 2**40])
    elif defect == "negative-index":
        f[rng.integers(len(f)), rng.integers(3)] = -rng.integers(1, 2**31)
    elif defect == "no-faces":
        f = f[:0]
    elif defect == "no-vertices":
        v, f = v[:0], f[:0]
    elif defect == "coincident":
        v[:] = rng.uniform(-1, 1, 3)
    elif defect == "huge-coordinates":
        v *= rng.choice([1e150, 1e300, 3e38])
    elif defect == "tiny-coordinates":
        v *= rng.choice([1e-150, 1e-300, 1e-320])
    elif defect == "duplicate-faces":
        f = np.concatenate([f, f[rng.integers(len(f), size=len(f))]])
    elif defect == "flipped":
        picks = rng.choice(len(f), size=rng.integers(1, len(f) + 1), replace=False)
        f[picks] = f[picks, ::-1]
    elif defect == "many-faces":  # many small valid faces: a larger, still-valid file
        v, f = (
            np.asarray(a, dtype=np.float64 if a.dtype.kind == "f" else np.int64)
            for a in triangle_grid(int(rng.integers(1000, 5000)))
        )
        v[:, 2] = rng.random(len(v))
    return v, f


def _declared(actual: int, lie: str, rng: np.random.Generator) -> int:
    """A count for a header: the true one or a lie."""
    return {
        "true": actual,
        "more": actual + int(rng.integers(1, 1000)),
        "fewer": max(actual - int(rng.integers(1, 10)), 0),
        "huge": int(rng.choice([2**31 - 1, 2**32 - 1, 10**12, 2**63 - 1])),
        "negative": -int(rng.integers(1, 100)),
    }[lie]


def _numbers(v: np.ndarray) -> list[str]:
    return [" ".join(repr(float(x)) for x in row) for row in v]


def encode_obj(v: np.ndarray, f: np.ndarray, lie: str, rng: np.random.Generator) -> bytes:
    lines = [f"v {row}" for row in _numbers(v)]
    groups = 1 if lie == "true" else int(rng.integers(1, 200))  # objects / materials split the file into parts
    for k, face in enumerate(f):
        if k % max(len(f) // groups, 1) == 0:
            lines += [f"o part{k}", f"usemtl m{k}"]
        lines.append("f " + " ".join(str(int(i) + 1 if i >= 0 else int(i)) for i in face))
    return "\n".join(lines).encode()


def encode_ply(v: np.ndarray, f: np.ndarray, lie: str, rng: np.random.Generator, binary: bool) -> bytes:
    nv, nf = _declared(len(v), lie, rng), _declared(len(f), rng.choice(COUNT_LIES) if lie != "true" else "true", rng)
    encoding = "binary_little_endian" if binary else "ascii"
    header = (
        f"ply\nformat {encoding} 1.0\nelement vertex {nv}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {nf}\nproperty list uchar int vertex_indices\nend_header\n"
    ).encode()
    if binary:
        faces = np.zeros(len(f), dtype=[("n", "u1"), ("i", "<i4", 3)])
        faces["n"], faces["i"] = 3, np.clip(f, -(2**31), 2**31 - 1)
        return header + v.astype("<f4").tobytes() + faces.tobytes()
    body = _numbers(v) + [f"3 {a} {b} {c}" for a, b, c in f]
    return header + "\n".join(body).encode()


def encode_stl(v: np.ndarray, f: np.ndarray, lie: str, rng: np.random.Generator, binary: bool) -> bytes:
    corners = v[np.clip(f, 0, max(len(v) - 1, 0))] if len(v) else np.zeros((len(f), 3, 3))
    if binary:
        records = np.zeros(len(f), dtype=[("normal", "<f4", 3), ("corners", "<f4", (3, 3)), ("attribute", "<u2")])
        records["corners"] = corners
        return b"\0" * 80 + struct.pack("<I", _declared(len(f), lie, rng) % 2**32) + records.tobytes()
    facets = [
        "facet normal 0 0 0\nouter loop\n" + "".join(f"vertex {row}\n" for row in _numbers(c)) + "endloop\nendfacet"
        for c in corners
    ]
    return ("solid fuzz\n" + "\n".join(facets) + "\nendsolid fuzz\n").encode()


def encode_off(v: np.ndarray, f: np.ndarray, lie: str, rng: np.random.Generator) -> bytes:
    header = f"OFF\n{_declared(len(v), lie, rng)} {_declared(len(f), lie, rng)} 0\n"
    return (header + "\n".join(_numbers(v) + [f"3 {a} {b} {c}" for a, b, c in f])).encode()


GLB_DEFECTS = (
    "none",
    "instances",
    "node-cycle",
    "lying-accessor",
    "bufferless-accessor",
    "bad-view",
    "bad-component",
    "strip",
    "points",
    "bad-scene",
    "matrix",
    "external-uri",
    "junk-json",
    "data-uri",
)


def encode_glb(v: np.ndarray, f: np.ndarray, defect: str, rng: np.random.Generator) -> bytes:
    document, binary = gltf_parts(v.astype(np.float32), np.clip(f, 0, 2**32 - 1).astype(np.uint32))
    if defect == "instances":  # one mesh shown by many nodes: a few, or far over the limits
        count = int(rng.choice([3, 100, 5_000, 60_000]))
        document["nodes"] = [{"mesh": 0, "translation": [float(i), 0.0, 0.0]} for i in range(count)]
        document["scenes"] = [{"nodes": list(range(count))}]
    elif defect == "node-cycle":
        document["nodes"] = [{"mesh": 0, "children": [1]}, {"children": [int(rng.integers(0, 3))]}]
    elif defect == "lying-accessor":
        document["accessors"][int(rng.integers(2))]["count"] = _declared(len(v), rng.choice(COUNT_LIES[1:]), rng)
    elif defect == "bufferless-accessor":
        document["accessors"].append(
            {"componentType": 5126, "count": int(rng.choice([10, 10**6, 10**9])), "type": "MAT4"}
        )
        document["meshes"][0]["primitives"][0]["attributes"]["POSITION"] = 2
    elif defect == "bad-view":
        document["bufferViews"][0].update(
            byteOffset=int(rng.integers(-8, 2**33)), byteStride=int(rng.integers(-4, 300))
        )
    elif defect == "bad-component":
        document["accessors"][0].update(
            componentType=int(rng.integers(0, 6000)), type=str(rng.choice(["VEC9", "MAT4", "", "SCALAR"]))
        )
    elif defect in ("strip", "points"):
        document["meshes"][0]["primitives"][0]["mode"] = (
            5 if defect == "strip" else int(rng.choice([0, 1, 2, 3, 6, 99]))
        )
    elif defect == "bad-scene":
        document["scene"] = int(rng.integers(-3, 5))
        document["scenes"][0]["nodes"] = [int(rng.integers(-2, 4))]
    elif defect == "matrix":
        document["nodes"][0]["matrix"] = [
            float(x) for x in rng.choice([0.0, 1.0, np.nan, np.inf, 1e308], size=int(rng.choice([16, 9])))
        ]
    elif defect == "external-uri":
        document["buffers"][0]["uri"] = str(
            rng.choice(["../secret.bin", "/etc/hostname", "file:///etc/hostname", "model.bin"])
        )
    elif defect == "junk-json":
        return glb_bytes(document, binary).replace(b'"accessors"', b'"accessors":{"x":[[[[', 1)
    elif defect == "data-uri":
        document["buffers"][0]["uri"] = "data:application/octet-stream;base64," + base64.b64encode(binary).decode()
        binary = b""
    return glb_bytes(document, binary)


# --- .h5 shape files --------------------------------------------------------------------------------

H5_DEFECTS = (
    "none",
    "drop-attr",
    "drop-group",
    "attr-type",
    "weights-nan",
    "weights-shape",
    "weights-dtype",
    "huge-width",
    "external-link",
    "soft-link",
    "external-storage",
    "format-version",
    "name",
    "unallocated",
    "huge-attr",
)


def default_family_shape(name: str):
    """A valid NeuralShape of the default family named ``name``: hand-set weights whose zero level set
    is the octahedron |x| + |y| + |z| = 0.5 (the first layer holds relu(+-x_i), the next sums them,
    the rest pass the sum on), in the identity frame."""
    from backend.shapes.family_file import resolve_family
    from backend.shapes.frame import Similarity
    from backend.shapes.shape_file import NeuralShape

    family = resolve_family("default")
    sizes = family.architecture.layer_sizes
    weights = [
        (np.zeros((rows, columns), np.float32), np.zeros(rows, np.float32)) for columns, rows in zip(sizes, sizes[1:])
    ]
    weights[0][0][:6] = np.concatenate([np.eye(3), -np.eye(3)])
    weights[1][0][0, :6] = 1.0
    for weight, _ in weights[2:]:
        weight[0, 0] = 1.0
    weights[-1][1][0] = -0.5
    metrics = {key: 0.01 for key in ("surface_error", "final_loss", "chamfer", "fscore", "fit_seconds", "steps")}
    provenance = {"source_name": "fuzz.obj", "source_sha256": "0" * 64, "tool_version": "0", "created": "2025-01-01"}
    return NeuralShape(
        name, family.architecture, family.family_id, weights, Similarity(1.0, np.zeros(3)), metrics, provenance
    )


@functools.cache
def valid_shape_bytes() -> bytes:
    """The file of :func:`default_family_shape`."""
    from backend.shapes.shape_file import shape_to_bytes

    return shape_to_bytes(default_family_shape("fuzz"))


def defective_h5(base: bytes, defect: str, rng: np.random.Generator) -> bytes:
    """``base`` (a valid shape file) with one structural defect, written through h5py."""
    if defect == "none":
        return base
    buffer = io.BytesIO(base)
    with h5py.File(buffer, "r+") as f:
        weights = f["weights"]
        if defect == "drop-attr":
            holder = f[str(rng.choice(["/", "weights", "provenance"]))]
            if holder.attrs:
                del holder.attrs[str(rng.choice(list(holder.attrs)))]
        elif defect == "drop-group":
            del f[str(rng.choice(["weights", "provenance"]))]
        elif defect == "attr-type":
            holder = f[str(rng.choice(["/", "weights", "provenance"]))]
            key = str(rng.choice(list(holder.attrs)))
            holder.attrs[key] = [np.arange(3), np.float64(np.nan), b"\xff\xfe", "x" * 1000, np.zeros((2, 2))][
                int(rng.integers(5))
            ]
        elif defect == "weights-nan":
            weights[int(rng.integers(weights.size))] = rng.choice([np.nan, np.inf])
        elif defect in ("weights-shape", "weights-dtype", "external-link", "soft-link", "external-storage"):
            size = weights.size
            del f["weights"]  # with its metrics: the structure or the weights are refused first
            if defect == "weights-shape":
                f.create_dataset("weights", data=np.zeros(size + int(rng.integers(-4, 5)) or 1, np.float32))
            elif defect == "weights-dtype":
                dtype = str(rng.choice(["<i8", "<c8", "|S4", "<f8", "|b1"]))
                f.create_dataset("weights", data=np.zeros(size).astype(dtype))
            elif defect == "external-link":
                f["weights"] = h5py.ExternalLink("/etc/hostname", "/x")
            elif defect == "soft-link":
                f["weights"] = h5py.SoftLink("/provenance")
            else:
                f.create_dataset(
                    "weights", shape=(size,), dtype="<f4", external=[("/etc/hostname", 0, h5py.h5f.UNLIMITED)]
                )
        elif defect == "huge-width":  # the architecture asks for a net far over the parameter bound
            width = int(rng.choice([0, -1, 1025, 10**6, 2**40]))
            f.attrs["layer_sizes"] = np.array([3, width, width, 1], dtype=np.int64)
        elif defect == "format-version":
            f.attrs["format_version"] = int(rng.choice([0, 1, 3, 999, -1]))
        elif defect == "name":
            names = ["../../evil", "/abs/evil", "", np.bytes_(b"\0x"), "a\nb", "x" * 60_000, np.bytes_(b"\xff\xfe")]
            f.attrs["name"] = names[int(rng.integers(len(names)))]
        elif defect == "unallocated":  # declared huge, never written: reads as fill values
            size = weights.size * int(rng.choice([1, 1000]))
            del f["weights"]
            f.create_dataset("weights", shape=(size,), dtype="<f4", chunks=True, compression="gzip")
        elif defect == "huge-attr":
            weights.attrs["surface_error"] = np.zeros(int(rng.choice([10, 8000])))  # attributes stop at 64 KiB
    return buffer.getvalue()


# --- byte-level damage and the case strategy ---------------------------------------------------------


def damaged(data: bytes, damage: str, rng: np.random.Generator) -> bytes:
    """``data`` after one kind of byte-level damage."""
    if damage == "truncate" and data:
        return data[: int(rng.integers(0, len(data)))]
    if damage == "flip" and data:
        out = bytearray(data)
        for at in rng.integers(0, len(data), size=int(rng.integers(1, 20))):
            out[at] = int(rng.integers(256))
        return bytes(out)
    if damage == "insert":
        at = int(rng.integers(0, len(data) + 1))
        return data[:at] + rng.bytes(int(rng.integers(1, 200))) + data[at:]
    if damage == "random":
        return rng.bytes(int(rng.integers(1, 4096)))
    if damage == "empty":
        return b""
    if damage == "wrong-magic":
        return rng.bytes(4) + data[4:]
    return data


_ENCODERS: dict[str, Callable[[np.ndarray, np.ndarray, str, np.random.Generator], bytes]] = {
    "obj": encode_obj,
    "ply-ascii": lambda v, f, lie, rng: encode_ply(v, f, lie, rng, binary=False),
    "ply-binary": lambda v, f, lie, rng: encode_ply(v, f, lie, rng, binary=True),
    "stl-ascii": lambda v, f, lie, rng: encode_stl(v, f, lie, rng, binary=False),
    "stl-binary": lambda v, f, lie, rng: encode_stl(v, f, lie, rng, binary=True),
    "off": encode_off,
}


@st.composite
def malformed_case(draw, formats: tuple[str, ...] = FORMATS) -> tuple[str, str, bytes]:
    """(format, description, file bytes): one drawn defective file."""
    fmt = draw(st.sampled_from(formats))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    damage = draw(st.sampled_from(DAMAGE))
    if fmt == "h5":
        defect = draw(st.sampled_from(H5_DEFECTS))
        data = defective_h5(valid_shape_bytes(), defect, rng)
        return fmt, f"{defect}, {damage}", damaged(data, damage, rng)
    defect = draw(st.sampled_from(GEOMETRY_DEFECTS))
    v, f = defective_mesh(draw(st.integers(0, 2)), defect, rng)
    if fmt == "glb":
        detail = draw(st.sampled_from(GLB_DEFECTS))
        data = encode_glb(v, f, detail, rng)
    else:
        detail = draw(st.sampled_from(COUNT_LIES))
        data = _ENCODERS[fmt](v, f, detail, rng)
    return fmt, f"{defect}, {detail}, {damage}", damaged(data, damage, rng)


def valid_file(fmt: str) -> bytes:
    """An undamaged file of ``fmt`` (a box), e.g. to warm a loader's imports up before timing cases."""
    if fmt == "h5":
        return valid_shape_bytes()
    rng = np.random.default_rng(0)
    v, f = defective_mesh(0, "none", rng)
    return encode_glb(v, f, "none", rng) if fmt == "glb" else _ENCODERS[fmt](v, f, "true", rng)


# --- the oracle --------------------------------------------------------------------------------------


def load_case(fmt: str, data: bytes) -> str:
    """Feed one file to its in-process loader: "accepted" (a finite mesh inside the normalising sphere,
    or a shape with finite weights) or "refused" (a one-line NeuralShapesError). Anything else is a
    crash and raises (AssertionError for a bad result or message, or the loader's own exception)."""
    from backend.errors import NeuralShapesError
    from backend.meshes.loading import DEFAULT_MAX_FACES, load_mesh_bytes
    from backend.shapes.frame import BOUNDING_RADIUS
    from backend.shapes.shape_file import shape_from_bytes

    try:
        if fmt == "h5":
            shape = shape_from_bytes(data, source="fuzz.h5")
            assert all(np.isfinite(w).all() and np.isfinite(b).all() for w, b in shape.weights), (
                "non-finite weights accepted"
            )
            assert 0 < shape.transform.scale < np.inf and np.isfinite(shape.transform.centre).all(), (
                "bad transform accepted"
            )
        else:
            mesh = load_mesh_bytes(data, fmt.split("-")[0], name="fuzz")
            assert np.isfinite(mesh.vertices).all(), "non-finite vertices accepted"
            assert np.linalg.norm(mesh.vertices, axis=1).max() <= BOUNDING_RADIUS * (1 + 1e-6), (
                "mesh outside the normalising sphere"
            )
            assert (
                0 < len(mesh.faces) <= DEFAULT_MAX_FACES
                and 0 <= mesh.faces.min()
                and mesh.faces.max() < len(mesh.vertices)
            ), "bad faces accepted"
    except NeuralShapesError as error:
        message = str(error)
        assert message and len(message.splitlines()) == 1, f"error message is not one line: {message[:200]!r}"
        return "refused"
    return "accepted"
