"""What the service answers, as plain dataclasses (stdlib only). Field meanings: docs/api.md."""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass, field, fields
from typing import Any


def _from(cls, data: dict[str, Any]):
    """An instance of dataclass ``cls`` from a JSON object, ignoring keys a newer service may add."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Health:
    """``service`` and ``status`` have defaults in the API's schema, so an answer may leave them out:
    :meth:`.Client.identify` then refuses it, as it does another service's."""

    version: str
    api_version: int
    status: str = ""
    service: str = ""


@dataclass(frozen=True)
class Upload:
    id: str
    name: str
    vertices: int
    faces: int
    source_sha256: str
    size_bytes: int
    created: str


@dataclass(frozen=True)
class Job:
    """A job's state: queued, running, succeeded, failed or cancelled; ``progress`` in [0, 1]."""

    id: str
    kind: str
    state: str
    progress: float
    stage: str
    error: str | None
    cancel_requested: bool
    created: str
    started: str | None
    finished: str | None
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.state in ("succeeded", "failed", "cancelled")

    @property
    def shape_ids(self) -> list[str]:
        """Library shapes the job made so far (fit and nf2vec jobs)."""
        return list(self.outputs.get("shapes", []))


@dataclass(frozen=True)
class Shape:
    """A library shape; ``transform`` and ``provenance`` only from :meth:`Client.shape`."""

    id: str
    name: str
    family_id: str
    architecture: dict[str, Any]
    metrics: dict[str, float | None]
    size_bytes: int
    source_sha256: str
    created: str
    job_id: str | None
    transform: dict[str, Any] | None = None
    provenance: dict[str, str] | None = None


@dataclass(frozen=True)
class Nf2vecInfo:
    """The service's nf2vec model; ``decoder`` the one used when a request names none ("latent" or
    "implicit"), ``decoders`` those it can serve, ``tasks`` which of generate / classify / complete the
    default decoder can serve, ``classes`` what generate can be asked for (empty: any only)."""

    model_id: str
    family_id: str
    embedding_size: int
    decoder: str = "implicit"
    decoders: list[str] = field(default_factory=list)
    tasks: dict[str, bool] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SimilarShape:
    """A library shape near the one asked about; ``distance`` between their codes (latent z or nf2vec embeddings)."""

    id: str
    name: str
    distance: float


@dataclass(frozen=True)
class ClassProbability:
    class_name: str  # "class" on the wire
    probability: float


def _native(values: array) -> array:
    # The wire is little-endian; array() is native.
    if sys.byteorder == "big":
        values.byteswap()
    return values


@dataclass(frozen=True)
class MeshArrays:
    """A mesh as flat arrays: vertices and normals ``array('f')`` (3 per vertex), faces ``array('i')``
    (3 per triangle), ready for Blender's ``foreach_set``. :meth:`numpy` gives (n, 3) arrays."""

    vertices: array
    faces: array
    normals: array

    @property
    def vertex_count(self) -> int:
        return len(self.vertices) // 3

    @property
    def face_count(self) -> int:
        return len(self.faces) // 3

    @staticmethod
    def from_raw(data: bytes, vertex_count: int, face_count: int) -> MeshArrays:
        v, f = 12 * vertex_count, 12 * face_count
        if len(data) != 2 * v + f:
            raise ValueError(
                f"raw mesh of {len(data)} bytes does not match {vertex_count} vertices and {face_count} faces"
            )
        return MeshArrays(
            _native(array("f", data[:v])), _native(array("i", data[v : v + f])), _native(array("f", data[v + f :]))
        )

    def numpy(self):
        import numpy as np

        return (
            np.asarray(self.vertices, dtype=np.float32).reshape(-1, 3),
            np.asarray(self.faces, dtype=np.int32).reshape(-1, 3),
            np.asarray(self.normals, dtype=np.float32).reshape(-1, 3),
        )


@dataclass(frozen=True)
class RenderedImage:
    """``png``: ``data`` is the PNG file; ``rgba``: ``data`` is float32 linear RGBA, top row first
    (:meth:`pixels` as ``array('f')``); ``npz``: ``data`` is an .npz with rgba, depth, normal, object_id."""

    width: int
    height: int
    format: str
    data: bytes

    def pixels(self) -> array:
        if self.format != "rgba":
            raise ValueError(f"pixels() needs format 'rgba', this image is '{self.format}'")
        return _native(array("f", self.data))
