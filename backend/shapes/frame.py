"""The normalised frame every neural shape lives in, and the similarity back to its source's frame.

A source mesh is translated so the centre of its bounding sphere sits at the origin and scaled so that
sphere has radius ``BOUNDING_RADIUS`` (0.9, as in the paper's code, so surface errors compare with the
paper's)::

    x_normalised = scale * (x_source - centre)

Networks are sampled and extracted over the cube ``[-CUBE_HALF_SIZE, CUBE_HALF_SIZE]^3``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOUNDING_RADIUS = 0.9
CUBE_HALF_SIZE = 1.0
# Extraction and rendering clip the field to this sphere: just outside every source surface, it only
# removes stray zero crossings a network may have in the sparsely sampled cube corners.
EXTRACTION_RADIUS = BOUNDING_RADIUS + 0.05


@dataclass(frozen=True)
class Similarity:
    """Uniform scale and translation: x_normalised = scale * (x_source - centre)."""

    scale: float
    centre: np.ndarray  # (3,) float64, source frame

    def to_normalised(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=np.float64) - self.centre) * self.scale

    def to_source(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, dtype=np.float64) / self.scale + self.centre

    def matrix(self) -> np.ndarray:
        """(4, 4) float64 homogeneous matrix from the source frame to the normalised frame."""
        m = np.eye(4) * self.scale
        m[3, 3] = 1.0
        m[:3, 3] = -self.scale * self.centre
        return m
