"""The running service's state: one object made at start (FastAPI lifespan) and closed at stop.

Nothing here is created at import time, so tests point a service at a temporary folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from backend.service.config import ServiceSettings
from backend.service.db import Database
from backend.service.security import load_or_create_token
from backend.service.services.compute import ComputeQueue
from backend.service.services.fit_job import FitJob
from backend.service.services.job_queue import JobManager
from backend.service.services.library import Library, RecoveryReport
from backend.service.services.nf2vec_jobs import Nf2vecJobs
from backend.service.services.nf2vec_queries import Nf2vec, decode_settings
from backend.service.services.uploads import Uploads

log = logging.getLogger(__name__)


@dataclass
class Service:
    """Settings, token, index, library, uploads, jobs, the compute queue of render / mesh work, and nf2vec."""

    settings: ServiceSettings
    token: str
    db: Database
    library: Library
    uploads: Uploads
    jobs: JobManager
    compute: ComputeQueue
    recovery: RecoveryReport
    nf2vec: Nf2vec
    nf2vec_jobs: Nf2vecJobs

    def close(self) -> None:
        self.jobs.shutdown()
        self.db.close()


def open_service(settings: ServiceSettings) -> Service:
    """Create the data folder, token and index; make files and rows agree; start the job pool."""
    decode = decode_settings(settings.nf2vec_decode)  # a bad setting fails before anything is touched
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _limit_torch_threads(settings.torch_threads)
    token = load_or_create_token(settings.token_path)
    db = Database(settings.database_path)
    library = Library(db=db, shapes_dir=settings.shapes_dir)
    uploads = Uploads(
        db=db, uploads_dir=settings.uploads_dir, max_faces=settings.max_faces, max_bytes=settings.max_upload_bytes
    )
    compute = ComputeQueue(settings.compute_slots, settings.compute_queue, settings.compute_deadline_seconds)
    fit = FitJob(library=library, uploads=uploads, fit_batch=settings.fit_batch, compute=compute)
    nf2vec = Nf2vec(library=library, spec=settings.nf2vec_model, decode=decode)
    nf2vec_jobs = Nf2vecJobs(nf2vec=nf2vec, library=library, uploads=uploads, compute=compute)
    jobs = JobManager(
        db=db, kinds=[fit.kind(), *nf2vec_jobs.kinds()], workers=settings.workers, max_pending=settings.max_pending_jobs
    )
    recovery = library.recover()
    jobs_report = jobs.start()
    purged = uploads.purge(older_than_seconds=settings.upload_ttl_seconds, keep=jobs.pending_uploads())
    if recovery.reindexed or recovery.dropped_rows or recovery.quarantined or jobs_report["interrupted"] or purged:
        log.warning(
            "recovered: %d shape files re-indexed, %d rows without files dropped, %d unreadable files quarantined, "
            "%d interrupted jobs marked failed, %d queued jobs resumed, %d old uploads removed",
            len(recovery.reindexed),
            len(recovery.dropped_rows),
            len(recovery.quarantined),
            jobs_report["interrupted"],
            jobs_report["resumed"],
            purged,
        )
    return Service(settings, token, db, library, uploads, jobs, compute, recovery, nf2vec, nf2vec_jobs)


def _limit_torch_threads(count: int) -> None:
    """Bound torch's intra-op threads so fitting leaves the HTTP side responsive (a process-wide setting)."""
    import torch

    torch.set_num_threads(count)
