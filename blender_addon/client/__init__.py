"""Client of the neural-shapes local service: stdlib only, no bpy (see README.md)."""

from .client import API_VERSION, Client, ServiceError, VersionMismatch
from .models import ClassProbability, Health, Job, MeshArrays, Nf2vecInfo, RenderedImage, Shape, SimilarShape, Upload

__all__ = [
    "API_VERSION", "ClassProbability", "Client", "Health", "Job", "MeshArrays", "Nf2vecInfo", "RenderedImage", "ServiceError", "Shape",
    "SimilarShape", "Upload", "VersionMismatch",
]
