"""Client of the neural-shapes local service: stdlib only, no bpy (see README.md)."""

from .client import API_VERSION, Client, Interrupter
from .discovery import is_loopback_http, service_url
from .errors import BadResponse, Interrupted, ServiceError, ServiceTimeout, ServiceUnreachable, VersionMismatch
from .models import ClassProbability, Health, Job, MeshArrays, Nf2vecInfo, RenderedImage, Shape, SimilarShape, Upload

__all__ = [
    "API_VERSION",
    "BadResponse",
    "ClassProbability",
    "Client",
    "Health",
    "Interrupted",
    "Interrupter",
    "Job",
    "MeshArrays",
    "Nf2vecInfo",
    "RenderedImage",
    "ServiceError",
    "ServiceTimeout",
    "ServiceUnreachable",
    "Shape",
    "SimilarShape",
    "Upload",
    "VersionMismatch",
    "is_loopback_http",
    "service_url",
]
