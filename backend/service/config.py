"""Settings of the local service. Everything that points at disk comes from ``data_dir`` so tests and
several instances can run side by side."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from platformdirs import user_data_dir

API_VERSION = 1  # bumped on any incompatible change of the HTTP API; clients compare it with /health
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MiB = 1024 * 1024


def default_data_dir() -> Path:
    """The platform's per-user data folder, e.g. ``~/.local/share/neural-shapes`` on Linux."""
    return Path(user_data_dir("neural-shapes", appauthor=False))


def default_torch_threads() -> int:
    """Leave one of the cores this process may use to the HTTP side, where there is more than one."""
    from kernels.device import available_cores  # Warp only when a service starts, not for --help

    return max(1, available_cores() - 1)


@dataclass(frozen=True)
class ServiceSettings:
    """How the service runs. Sizes in bytes, times in seconds."""

    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = 0  # 0: the operating system picks a free port
    workers: int = 1  # jobs running at once
    max_pending_jobs: int = 256  # queued + running; more is refused with 429
    torch_threads: int = field(default_factory=default_torch_threads)
    max_upload_bytes: int = 512 * MiB  # mesh uploads and .h5 imports
    max_json_bytes: int = 4 * MiB  # every other request body
    max_faces: int = 2_000_000
    max_meshes_per_job: int = 1024
    fit_batch: int = 16  # meshes fitted together in one batched model
    upload_ttl_seconds: float = 7 * 24 * 3600  # unused uploads are removed at start after this
    compute_slots: int = 1  # mesh extractions / renders running at once (Warp kernels, CPU or GPU)
    compute_queue: int = 8  # mesh / render requests waiting for a slot; more are refused at once (503 + Retry-After)
    compute_deadline_seconds: float = 120.0  # a mesh / render request (waiting included) is stopped after this
    nf2vec_model: str = "default"  # nf2vec model folder; "default": the bundled one (backend/nf2vec/default)
    # For tests only: overrides of DecodeSettings fields, e.g. {"resolution": 32, "fit": {"max_steps": 50}}
    # (quick, crude nf2vec results); empty: DecodeSettings(). See backend.service.services.nf2vec_queries.decode_settings.
    nf2vec_decode: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.host not in LOOPBACK_HOSTS:
            raise ValueError(f"host must be a loopback address ({', '.join(LOOPBACK_HOSTS)}), got '{self.host}'")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")
        if self.max_upload_bytes < 1 or self.max_json_bytes < 1:
            raise ValueError("size limits must be positive")
        if self.workers < 1 or self.torch_threads < 1 or self.compute_slots < 1 or self.fit_batch < 1:
            raise ValueError("workers, torch_threads, compute_slots and fit_batch must be at least 1")
        if self.compute_queue < 0 or not self.compute_deadline_seconds > 0:
            raise ValueError("compute_queue must be at least 0 and compute_deadline_seconds positive")
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().absolute())

    @property
    def shapes_dir(self) -> Path:
        return self.data_dir / "shapes"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "index.sqlite3"

    @property
    def service_file_path(self) -> Path:
        return self.data_dir / "service.json"

    @property
    def token_path(self) -> Path:
        return self.data_dir / "token"
