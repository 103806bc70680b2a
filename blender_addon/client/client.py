"""A typed client of the neural-shapes local service (stdlib only: urllib, json, dataclasses).

    client = Client.from_data_dir("http://127.0.0.1:8765", data_dir)   # reads <data-dir>/token
    client.check_version()                                             # refuses an incompatible service
    upload = client.upload_mesh(vertices, faces, name="chair")
    job = client.wait(client.start_fit([upload.id]).id)
    mesh = client.mesh(job.shape_ids[0], resolution=256)
    between = client.wait(client.start_interpolate(a_id, b_id, count=3).id)   # nf2vec: 3 in-betweens

Every failure raises :class:`ServiceError` with the HTTP status (0 when the service cannot be reached)
and the service's one-line message. Calls block: from Blender, run them on a worker thread.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from array import array
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .models import (
    ClassProbability,
    Health,
    Job,
    MeshArrays,
    Nf2vecInfo,
    RenderedImage,
    Shape,
    SimilarShape,
    Upload,
    _from,
)

API_VERSION = 1  # the service API this client speaks
MESH_FILE_FORMATS = ("obj", "ply", "stl", "off", "glb")


class ServiceError(Exception):
    """A request failed: ``status`` is the HTTP status (0: no answer), ``detail`` the service's message."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"{status}: {detail}" if status else detail)
        self.status = status
        self.detail = detail


class VersionMismatch(ServiceError):
    """The service speaks another API version than this client."""


def _flat(values: Any, typecode: str) -> bytes:
    """Little-endian bytes of a (n, 3) array-like: numpy arrays, ``array`` objects or nested lists."""
    if hasattr(values, "dtype") and hasattr(values, "astype"):  # numpy, without importing it
        return values.astype("<f4" if typecode == "f" else "<i4").tobytes()
    if isinstance(values, array) and values.typecode == typecode:
        flat = array(typecode, values)
    else:
        flat = array(typecode)
        for item in values:
            if isinstance(item, (int, float)):
                flat.append(item)
            else:
                flat.extend(item)
    if sys.byteorder == "big":
        flat.byteswap()
    return flat.tobytes()


class Client:
    """One service at ``base_url`` (e.g. ``http://127.0.0.1:8765``) with its token."""

    def __init__(self, base_url: str, token: str, timeout: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        # No proxies: a system proxy must never see local requests or the token.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @classmethod
    def from_data_dir(cls, base_url: str, data_dir: str | Path, timeout: float = 60.0) -> Client:
        """A client with the token the service keeps in ``<data_dir>/token``."""
        return cls(base_url, (Path(data_dir) / "token").read_text(encoding="ascii").strip(), timeout)

    @classmethod
    def from_running_service(cls, data_dir: str | Path, timeout: float = 60.0) -> Client:
        """A client of the service that runs on ``data_dir`` (its URL from ``<data_dir>/service.json``)."""
        try:
            url = json.loads((Path(data_dir) / "service.json").read_text())["url"]
        except (OSError, ValueError, KeyError) as error:
            raise ServiceError(0, f"no running service found for {data_dir} ({error})") from None
        return cls.from_data_dir(url, data_dir, timeout)

    # --- low level -------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        json_body: Any = None,
        body: bytes | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request; returns (status, headers, body) for 2xx, raises :class:`ServiceError` otherwise."""
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        all_headers = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            content_type = content_type or "application/json"
        if content_type:
            all_headers["Content-Type"] = content_type
        req = urllib.request.Request(url, data=body, method=method, headers=all_headers)
        try:
            with self._opener.open(req, timeout=timeout or self.timeout) as response:
                return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                detail = json.loads(raw)["detail"]
            except (ValueError, KeyError, TypeError):
                detail = raw.decode("utf-8", "replace")[:500] or error.reason
            raise ServiceError(error.code, str(detail)) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ServiceError(0, f"cannot reach the neural-shapes service at {self.base_url} ({reason})") from None

    def _json(self, method: str, path: str, **options) -> Any:
        _, _, data = self.request(method, path, **options)
        return json.loads(data) if data else None

    # --- service ---------------------------------------------------------------------------------

    def health(self) -> Health:
        return _from(Health, self._json("GET", "/health"))

    def check_version(self) -> Health:
        """:meth:`health`, raising :class:`VersionMismatch` if the service speaks another API version."""
        health = self.health()
        if health.api_version != API_VERSION:
            raise VersionMismatch(0, f"the service speaks API version {health.api_version}, this client {API_VERSION}: update the older one")
        return health

    # --- uploads and jobs ------------------------------------------------------------------------

    def upload_mesh(self, vertices: Any, faces: Any, *, name: str = "mesh") -> Upload:
        """Stage a mesh given as arrays: vertices (v, 3) float, faces (f, 3) int (numpy, ``array`` or lists)."""
        vertex_bytes = _flat(vertices, "f")
        body = vertex_bytes + _flat(faces, "i")
        query = {"format": "raw", "name": name, "vertex_count": len(vertex_bytes) // 12}
        return _from(Upload, self._json("POST", "/v1/uploads", query=query, body=body, content_type="application/octet-stream"))

    def upload_mesh_file(self, path: str | Path, *, name: str | None = None) -> Upload:
        """Stage a mesh file (OBJ, PLY, STL, OFF, GLB); the format comes from the suffix."""
        path = Path(path)
        format = path.suffix.lower().lstrip(".")
        if format not in MESH_FILE_FORMATS:
            raise ServiceError(0, f"{path}: unsupported mesh format '{path.suffix}' (use {', '.join(MESH_FILE_FORMATS)})")
        query = {"format": format, "name": name or path.stem}
        return _from(Upload, self._json("POST", "/v1/uploads", query=query, body=path.read_bytes(), content_type="application/octet-stream"))

    def start_fit(
        self,
        upload_ids: Iterable[str],
        *,
        settings: dict[str, Any] | None = None,
        architecture: dict[str, Any] | None = None,
        resolution: int | None = None,
        **options: Any,
    ) -> Job:
        """Fit staged meshes in one batched job (``settings``: samples, max_steps, target_surface_error ...)."""
        body: dict[str, Any] = {"uploads": list(upload_ids), **options}
        if settings:
            body["settings"] = settings
        if architecture:
            body["architecture"] = architecture
        if resolution is not None:
            body["resolution"] = resolution
        return _from(Job, self._json("POST", "/v1/jobs/fit", json_body=body))

    def job(self, job_id: str) -> Job:
        return _from(Job, self._json("GET", f"/v1/jobs/{urllib.parse.quote(job_id, safe='')}"))

    def jobs(self, *, state: str | None = None, limit: int = 100, offset: int = 0) -> list[Job]:
        data = self._json("GET", "/v1/jobs", query={"state": state, "limit": limit, "offset": offset})
        return [_from(Job, item) for item in data["items"]]

    def cancel(self, job_id: str) -> Job:
        return _from(Job, self._json("POST", f"/v1/jobs/{urllib.parse.quote(job_id, safe='')}/cancel"))

    def wait(self, job_id: str, *, timeout: float = 3600.0, poll: float = 0.25, on_progress: Callable[[Job], None] | None = None) -> Job:
        """Poll a job until it is done (any final state); :class:`ServiceError` on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job.done:
                return job
            if time.monotonic() > deadline:
                raise ServiceError(0, f"job {job_id} still {job.state} after {timeout:.0f} s")
            time.sleep(poll)

    # --- shapes ----------------------------------------------------------------------------------

    def shapes(self, *, limit: int = 100, offset: int = 0) -> list[Shape]:
        data = self._json("GET", "/v1/shapes", query={"limit": limit, "offset": offset})
        return [_from(Shape, item) for item in data["items"]]

    def shape(self, shape_id: str) -> Shape:
        return _from(Shape, self._json("GET", f"/v1/shapes/{urllib.parse.quote(shape_id, safe='')}"))

    def delete_shape(self, shape_id: str) -> None:
        self.request("DELETE", f"/v1/shapes/{urllib.parse.quote(shape_id, safe='')}")

    def download_shape(self, shape_id: str) -> bytes:
        """The ``.h5`` file's bytes."""
        return self.request("GET", f"/v1/shapes/{urllib.parse.quote(shape_id, safe='')}/file")[2]

    def import_shape(self, data: bytes, *, name: str | None = None) -> Shape:
        """Add a ``.h5`` file's content to the library (validated by the service)."""
        return _from(Shape, self._json("POST", "/v1/shapes/import", query={"name": name}, body=data, content_type="application/octet-stream"))

    def mesh(self, shape_id: str, *, resolution: int = 256, method: str = "sparse", frame: str = "source") -> MeshArrays:
        """Marching-cubes mesh of a shape (source frame by default) as flat arrays."""
        _, headers, data = self.request(
            "GET", f"/v1/shapes/{urllib.parse.quote(shape_id, safe='')}/mesh",
            query={"resolution": resolution, "method": method, "frame": frame, "format": "raw"},
        )
        return MeshArrays.from_raw(data, int(headers["x-vertex-count"]), int(headers["x-face-count"]))

    def mesh_file(self, shape_id: str, *, resolution: int = 256, method: str = "sparse", format: str = "obj") -> bytes:
        """Marching-cubes mesh of a shape in the source frame as a mesh file's bytes (obj, ply, stl or glb)."""
        return self.request(
            "GET", f"/v1/shapes/{urllib.parse.quote(shape_id, safe='')}/mesh",
            query={"resolution": resolution, "method": method, "frame": "source", "format": format},
        )[2]

    def render(
        self,
        objects: list[dict[str, Any]],
        *,
        width: int = 512,
        height: int = 512,
        camera: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
        format: str = "png",
    ) -> RenderedImage:
        """Render library shapes: ``objects`` like ``{"shape": id, "matrix_world": 4x4, "operation": "union"}``;
        no ``camera`` frames them automatically. See docs/api.md for every field."""
        body: dict[str, Any] = {"width": width, "height": height, "objects": objects, "format": format}
        if camera is not None:
            body["camera"] = camera
        if settings is not None:
            body["settings"] = settings
        _, headers, data = self.request("POST", "/v1/render", json_body=body)
        return RenderedImage(int(headers["x-width"]), int(headers["x-height"]), format, data)

    # --- nf2vec ----------------------------------------------------------------------------------

    def nf2vec_info(self) -> Nf2vecInfo:
        """The service's nf2vec model (a 503 :class:`ServiceError` while it has none)."""
        return _from(Nf2vecInfo, self._json("GET", "/v1/nf2vec"))

    def start_interpolate(self, a: str, b: str, *, times: list[float] | None = None, count: int | None = None, space: str = "embedding") -> Job:
        """In-betweens of shapes ``a`` and ``b``: at each t of ``times`` (0 = a, 1 = b) or ``count`` evenly
        spaced; ``space``: "embedding" or "weights". The job's ``inputs["times"]`` follow its shapes' order."""
        body: dict[str, Any] = {"a": a, "b": b, "space": space}
        if times is not None:
            body["times"] = list(times)
        if count is not None:
            body["count"] = count
        return _from(Job, self._json("POST", "/v1/nf2vec/interpolate", json_body=body))

    def start_generate(self, count: int = 1, *, seed: int = 0, class_name: str | None = None) -> Job:
        """``count`` new shapes (of ``class_name``, one of :meth:`nf2vec_info`'s classes; None: any)."""
        return _from(Job, self._json("POST", "/v1/nf2vec/generate", json_body={"count": count, "seed": seed, "class": class_name}))

    def start_complete(self, *, shape_id: str | None = None, upload_id: str | None = None) -> Job:
        """Complete a partial shape: a library shape, or a staged mesh (fitted first, as ``outputs["fitted"]``)."""
        body = {"shape": shape_id} if shape_id is not None else {"upload": upload_id}
        return _from(Job, self._json("POST", "/v1/nf2vec/complete", json_body=body))

    def similar(self, shape_id: str, *, k: int = 5) -> list[SimilarShape]:
        """The ``k`` library shapes nearest to a shape in nf2vec embedding space, nearest first."""
        data = self._json("GET", f"/v1/shapes/{urllib.parse.quote(shape_id, safe='')}/similar", query={"k": k})
        return [_from(SimilarShape, item) for item in data]

    def classify(self, shape_id: str) -> list[ClassProbability]:
        """Every class the nf2vec classifier knows with its probability, most likely first."""
        data = self._json("GET", f"/v1/shapes/{urllib.parse.quote(shape_id, safe='')}/classify")
        return [ClassProbability(item["class"], float(item["probability"])) for item in data]
