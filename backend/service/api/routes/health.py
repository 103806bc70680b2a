"""``GET /health``: the only route without the token; says nothing private."""

from __future__ import annotations

from fastapi import APIRouter

from backend import __version__
from backend.service.api.schemas import Health
from backend.service.config import API_VERSION

router = APIRouter()


@router.get("/health", response_model=Health, tags=["service"])
def health() -> Health:
    """Service and API versions, so a client can refuse a mismatch before sending anything else."""
    return Health(version=__version__, api_version=API_VERSION)
