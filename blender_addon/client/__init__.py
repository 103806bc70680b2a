"""Client of the neural-shapes local service: stdlib only, no bpy (see README.md)."""

from .client import API_VERSION, Client, ServiceError, VersionMismatch
from .models import Health, Job, MeshArrays, RenderedImage, Shape, Upload

__all__ = ["API_VERSION", "Client", "Health", "Job", "MeshArrays", "RenderedImage", "ServiceError", "Shape", "Upload", "VersionMismatch"]
