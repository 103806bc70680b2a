"""The local HTTP service (``neural-shapes serve``): shape library, job queue and HTTP API.

Layers: ``config`` (settings), ``db`` (SQLite index), ``services/`` (the work: library, uploads, job
queue and jobs, compute slots; keyword-only functions, no HTTP), ``api/`` (FastAPI routes that only
translate HTTP), ``server`` (uvicorn, port, signals). See docs/api.md.
"""
