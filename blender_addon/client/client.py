"""A typed client of the neural-shapes local service (stdlib only: urllib, json, dataclasses).

    client = Client.from_data_dir("http://127.0.0.1:8765", data_dir)   # reads <data-dir>/token
    client.check_version()                                             # refuses an incompatible service
    upload = client.upload_mesh(vertices, faces, name="chair")
    job = client.wait(client.start_fit([upload.id]).id)
    mesh = client.mesh(job.shape_ids[0], resolution=256)
    between = client.wait(client.start_interpolate(a_id, b_id, count=3).id)   # nf2vec: 3 in-betweens

Every failure raises a :class:`ServiceError` (see :mod:`.errors` for the kinds) with the HTTP status
(0 when there is no HTTP answer) and a one-line message. The token goes with every request except
``/health`` (so a client can check what answers before trusting it), redirects are never followed, and
no proxy sees a request. Calls block: from Blender, run them on a worker thread, made with an
:class:`Interrupter` so that they can be broken off.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from array import array
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .discovery import service_url
from .errors import BadResponse, Interrupted, ServiceError, ServiceTimeout, ServiceUnreachable, VersionMismatch
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
SERVICE_NAME = "neural-shapes"  # what /health's "service" says
MESH_FILE_FORMATS = ("obj", "ply", "stl", "off", "glb")
HEALTH_TIMEOUT = 5.0  # seconds: /health does no work, a slower answer is not worth waiting for


class Interrupter:
    """Breaks off, from any thread, the requests in flight of the clients made with it, and makes their
    later requests fail at once (Blender's unregister: no worker may stay blocked on a slow service)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self.interrupted = False

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)
            interrupted = self.interrupted
        if interrupted:
            _shut(sock)

    def interrupt(self) -> None:
        with self._lock:
            self.interrupted = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)  # wakes a thread blocked in recv or send on it


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


class _TrackedConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, interrupter: Interrupter, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._interrupter = interrupter

    def connect(self) -> None:
        super().connect()
        self._interrupter.track(self.sock)


class _InterruptibleHandler(urllib.request.HTTPHandler):
    def __init__(self, interrupter: Interrupter):
        super().__init__()
        self._interrupter = interrupter

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_TrackedConnection, req, interrupter=self._interrupter)


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    # urllib follows 30x by default, with the Authorization header: a stale service.json's port, now
    # someone else's, could bounce the token anywhere.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        fp.close()
        raise BadResponse(
            code,
            f"{req.get_method()} {urllib.parse.urlsplit(req.full_url).path} answered with a redirect to {newurl}: not followed",
        )


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


@contextmanager
def _parsing(what: str) -> Iterator[None]:
    """Turn a body or header that is not what the API promises into one :class:`BadResponse` line."""
    try:
        yield
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
        raise BadResponse(0, f"bad response to {what}: {type(error).__name__}: {str(error)[:200]}") from None


class Client:
    """One service at ``base_url`` (e.g. ``http://127.0.0.1:8765``) with its token; ``timeout`` in
    seconds for one request to be answered (a slow answer raises :class:`ServiceTimeout`)."""

    def __init__(self, base_url: str, token: str, timeout: float = 60.0, *, interrupter: Interrupter | None = None):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.interrupter = interrupter
        # No proxies: a system proxy must never see local requests or the token.
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({}), _RefuseRedirects()]
        if interrupter is not None:
            handlers.append(_InterruptibleHandler(interrupter))
        self._opener = urllib.request.build_opener(*handlers)

    @classmethod
    def from_data_dir(
        cls, base_url: str, data_dir: str | Path, timeout: float = 60.0, *, interrupter: Interrupter | None = None
    ) -> Client:
        """A client with the token the service keeps in ``<data_dir>/token``."""
        token = (Path(data_dir) / "token").read_text(encoding="ascii").strip()
        return cls(base_url, token, timeout, interrupter=interrupter)

    @classmethod
    def from_running_service(
        cls, data_dir: str | Path, timeout: float = 60.0, *, interrupter: Interrupter | None = None
    ) -> Client:
        """A client of the service that runs on ``data_dir``: its URL from ``<data_dir>/service.json``,
        trusted only once its process lives, the URL is loopback http and ``/health`` (asked without the
        token) says neural-shapes; :class:`ServiceUnreachable` otherwise."""
        url = service_url(data_dir)
        probe = cls(url, "", timeout, interrupter=interrupter)
        try:
            probe.identify()
        except (BadResponse, ServiceTimeout, ServiceUnreachable) as error:
            raise ServiceUnreachable(
                0, f"no running service found for {data_dir}: {url} from service.json is stale ({error.detail})"
            ) from None
        try:
            return cls.from_data_dir(url, data_dir, timeout, interrupter=interrupter)
        except OSError as error:
            raise ServiceUnreachable(
                0, f"a service runs on {data_dir} but its token is not readable ({error.strerror or error})"
            ) from None

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
        token: bool = True,
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request (with the token unless ``token`` is False); returns (status, headers, body)
        for 2xx, raises a :class:`ServiceError` otherwise."""
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        all_headers = {"Authorization": f"Bearer {self.token}"} if token else {}
        all_headers.update(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            content_type = content_type or "application/json"
        if content_type:
            all_headers["Content-Type"] = content_type
        req = urllib.request.Request(url, data=body, method=method, headers=all_headers)
        wait = timeout or self.timeout
        what = f"{method} {path}"
        if self.interrupter is not None and self.interrupter.interrupted:
            raise Interrupted(0, f"{what} not sent: the client is shutting down")
        try:
            with self._opener.open(req, timeout=wait) as response:
                return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
        except urllib.error.HTTPError as error:
            raise ServiceError(error.code, _error_detail(error)) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            raise self._failure(what, wait, error) from None

    def _failure(self, what: str, wait: float, error: Exception) -> ServiceError:
        """The kind of failure behind an exception of urllib / http.client / socket."""
        reason = (
            error.reason
            if isinstance(error, urllib.error.URLError) and isinstance(error.reason, BaseException)
            else error
        )
        if self.interrupter is not None and self.interrupter.interrupted:
            return Interrupted(0, f"{what} broken off: the client is shutting down")
        if isinstance(reason, TimeoutError):
            return ServiceTimeout(
                0,
                f"the service at {self.base_url} did not answer {what} within {wait:g} s (it may still be working on it)",
            )
        if isinstance(reason, (ConnectionRefusedError, socket.gaierror)) or (
            isinstance(error, urllib.error.URLError)
            and not isinstance(reason, (ConnectionError, http.client.HTTPException))
        ):
            return ServiceUnreachable(
                0, f"cannot reach the neural-shapes service at {self.base_url} ({_reason(reason)})"
            )
        # Connected, then cut off: the service died or dropped us mid-answer.
        return BadResponse(0, f"the connection to the service broke during {what} ({_reason(reason)})")

    def _json(self, method: str, path: str, **options: Any) -> Any:
        _, _, data = self.request(method, path, **options)
        with _parsing(f"{method} {path}"):
            return json.loads(data) if data else None

    def _model(self, cls: type, method: str, path: str, **options: Any) -> Any:
        """The JSON answer as dataclass ``cls``."""
        data = self._json(method, path, **options)
        with _parsing(f"{method} {path}"):
            return _from(cls, data)

    def _models(self, cls: type, method: str, path: str, key: str | None = "items", **options: Any) -> list[Any]:
        """The JSON answer's list (under ``key``; None: the answer itself) as dataclasses ``cls``."""
        data = self._json(method, path, **options)
        with _parsing(f"{method} {path}"):
            return [_from(cls, item) for item in (data if key is None else data[key])]

    # --- service ---------------------------------------------------------------------------------

    def health(self) -> Health:
        """Versions of the service (asked without the token)."""
        return self._model(Health, "GET", "/health", token=False, timeout=min(self.timeout, HEALTH_TIMEOUT))

    def identify(self) -> Health:
        """:meth:`health`, raising :class:`BadResponse` unless the answer is the neural-shapes service's."""
        health = self.health()
        if health.service != SERVICE_NAME or not isinstance(health.api_version, int):
            raise BadResponse(0, f"{self.base_url}/health answers as {str(health.service)[:80]!r}, not {SERVICE_NAME}")
        return health

    def check_version(self) -> Health:
        """:meth:`identify`, raising :class:`VersionMismatch` if the service speaks another API version."""
        health = self.identify()
        if health.api_version != API_VERSION:
            raise VersionMismatch(
                0,
                f"the service speaks API version {health.api_version}, this client {API_VERSION}: update the older one",
            )
        return health

    # --- uploads and jobs ------------------------------------------------------------------------

    def upload_mesh(self, vertices: Any, faces: Any, *, name: str = "mesh") -> Upload:
        """Stage a mesh given as arrays: vertices (v, 3) float, faces (f, 3) int (numpy, ``array`` or lists)."""
        vertex_bytes = _flat(vertices, "f")
        body = vertex_bytes + _flat(faces, "i")
        query = {"format": "raw", "name": name, "vertex_count": len(vertex_bytes) // 12}
        return self._model(
            Upload, "POST", "/v1/uploads", query=query, body=body, content_type="application/octet-stream"
        )

    def upload_mesh_file(self, path: str | Path, *, name: str | None = None) -> Upload:
        """Stage a mesh file (OBJ, PLY, STL, OFF, GLB); the format comes from the suffix."""
        path = Path(path)
        format = path.suffix.lower().lstrip(".")
        if format not in MESH_FILE_FORMATS:
            raise ServiceError(
                0, f"{path}: unsupported mesh format '{path.suffix}' (use {', '.join(MESH_FILE_FORMATS)})"
            )
        query = {"format": format, "name": name or path.stem}
        return self._model(
            Upload, "POST", "/v1/uploads", query=query, body=path.read_bytes(), content_type="application/octet-stream"
        )

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
        return self._model(Job, "POST", "/v1/jobs/fit", json_body=body)

    def job(self, job_id: str) -> Job:
        return self._model(Job, "GET", f"/v1/jobs/{_quote(job_id)}")

    def jobs(self, *, state: str | None = None, limit: int = 100, offset: int = 0) -> list[Job]:
        return self._models(Job, "GET", "/v1/jobs", query={"state": state, "limit": limit, "offset": offset})

    def cancel(self, job_id: str) -> Job:
        return self._model(Job, "POST", f"/v1/jobs/{_quote(job_id)}/cancel")

    def wait(
        self,
        job_id: str,
        *,
        timeout: float = 3600.0,
        poll: float = 0.25,
        on_progress: Callable[[Job], None] | None = None,
    ) -> Job:
        """Poll a job until it is done (any final state); :class:`ServiceTimeout` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job.done:
                return job
            if time.monotonic() > deadline:
                raise ServiceTimeout(0, f"job {job_id} still {job.state} after {timeout:.0f} s")
            time.sleep(poll)

    # --- shapes ----------------------------------------------------------------------------------

    def shapes(self, *, limit: int = 100, offset: int = 0) -> list[Shape]:
        return self._models(Shape, "GET", "/v1/shapes", query={"limit": limit, "offset": offset})

    def shape(self, shape_id: str) -> Shape:
        return self._model(Shape, "GET", f"/v1/shapes/{_quote(shape_id)}")

    def delete_shape(self, shape_id: str) -> None:
        self.request("DELETE", f"/v1/shapes/{_quote(shape_id)}")

    def download_shape(self, shape_id: str) -> bytes:
        """The ``.h5`` file's bytes."""
        return self.request("GET", f"/v1/shapes/{_quote(shape_id)}/file")[2]

    def import_shape(self, data: bytes, *, name: str | None = None) -> Shape:
        """Add a ``.h5`` file's content to the library (validated by the service)."""
        return self._model(
            Shape, "POST", "/v1/shapes/import", query={"name": name}, body=data, content_type="application/octet-stream"
        )

    def mesh(
        self, shape_id: str, *, resolution: int = 256, method: str = "sparse", frame: str = "source"
    ) -> MeshArrays:
        """Marching-cubes mesh of a shape (source frame by default) as flat arrays."""
        path = f"/v1/shapes/{_quote(shape_id)}/mesh"
        _, headers, data = self.request(
            "GET", path, query={"resolution": resolution, "method": method, "frame": frame, "format": "raw"}
        )
        with _parsing(f"GET {path}"):
            return MeshArrays.from_raw(data, int(headers["x-vertex-count"]), int(headers["x-face-count"]))

    def mesh_file(self, shape_id: str, *, resolution: int = 256, method: str = "sparse", format: str = "obj") -> bytes:
        """Marching-cubes mesh of a shape in the source frame as a mesh file's bytes (obj, ply, stl or glb)."""
        return self.request(
            "GET",
            f"/v1/shapes/{_quote(shape_id)}/mesh",
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
        no ``camera`` frames them automatically. See docs/api.md for every field. An ``rgba`` answer whose
        size does not match its header is a :class:`BadResponse`."""
        body: dict[str, Any] = {"width": width, "height": height, "objects": objects, "format": format}
        if camera is not None:
            body["camera"] = camera
        if settings is not None:
            body["settings"] = settings
        _, headers, data = self.request("POST", "/v1/render", json_body=body)
        with _parsing("POST /v1/render"):
            image = RenderedImage(int(headers["x-width"]), int(headers["x-height"]), format, data)
            if format == "rgba" and len(data) != 16 * image.width * image.height:
                raise ValueError(f"{len(data)} bytes for a {image.width} x {image.height} RGBA float image")
            return image

    # --- nf2vec ----------------------------------------------------------------------------------

    def nf2vec_info(self) -> Nf2vecInfo:
        """The service's nf2vec model (a 503 :class:`ServiceError` while it has none)."""
        return self._model(Nf2vecInfo, "GET", "/v1/nf2vec")

    def start_interpolate(
        self,
        a: str,
        b: str,
        *,
        times: list[float] | None = None,
        count: int | None = None,
        space: str = "embedding",
        decoder: str | None = None,
    ) -> Job:
        """In-betweens of shapes ``a`` and ``b``: at each t of ``times`` (0 = a, 1 = b) or ``count`` evenly
        spaced; ``space``: "embedding" or "weights". The job's ``inputs["times"]`` follow its shapes' order.
        ``decoder`` on every nf2vec call: "latent" or "implicit"; None: the model's default (:meth:`nf2vec_info`)."""
        body: dict[str, Any] = {"a": a, "b": b, "space": space, "decoder": decoder}
        if times is not None:
            body["times"] = list(times)
        if count is not None:
            body["count"] = count
        return self._model(Job, "POST", "/v1/nf2vec/interpolate", json_body=body)

    def start_generate(
        self,
        count: int = 1,
        *,
        seed: int = 0,
        class_name: str | None = None,
        truncation: float | None = None,
        decoder: str | None = None,
    ) -> Job:
        """``count`` new shapes (of ``class_name``, one of :meth:`nf2vec_info`'s classes; None: any); ``truncation``
        in [0, 1] (0: the class's typical shape; None: the service's default)."""
        body = {"count": count, "seed": seed, "class": class_name, "truncation": truncation, "decoder": decoder}
        return self._model(Job, "POST", "/v1/nf2vec/generate", json_body=body)

    def start_complete(
        self, *, shape_id: str | None = None, upload_id: str | None = None, decoder: str | None = None
    ) -> Job:
        """Complete a partial shape: a library shape, or a staged mesh (fitted first, as ``outputs["fitted"]``)."""
        body = {"shape": shape_id} if shape_id is not None else {"upload": upload_id}
        return self._model(Job, "POST", "/v1/nf2vec/complete", json_body={**body, "decoder": decoder})

    def similar(self, shape_id: str, *, k: int = 5, decoder: str | None = None) -> list[SimilarShape]:
        """The ``k`` library shapes nearest to a shape (latent z, or nf2vec embeddings), nearest first."""
        return self._models(
            SimilarShape, "GET", f"/v1/shapes/{_quote(shape_id)}/similar", key=None, query={"k": k, "decoder": decoder}
        )

    def classify(self, shape_id: str, *, decoder: str | None = None) -> list[ClassProbability]:
        """Every class the model knows with its probability, most likely first."""
        path = f"/v1/shapes/{_quote(shape_id)}/classify"
        data = self._json("GET", path, query={"decoder": decoder})
        with _parsing(f"GET {path}"):
            return [ClassProbability(str(item["class"]), float(item["probability"])) for item in data]


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _reason(error: BaseException) -> str:
    return str(error) or type(error).__name__


def _error_detail(error: urllib.error.HTTPError) -> str:
    """The service's one-line ``detail`` of an error answer, else the start of its body, else the reason."""
    try:
        raw = error.read()
    except (OSError, http.client.HTTPException):
        raw = b""  # cut off too: the status says enough
    try:
        detail = json.loads(raw)["detail"]
    except (ValueError, KeyError, TypeError):
        detail = raw.decode("utf-8", "replace")[:500] or error.reason
    return str(detail)
