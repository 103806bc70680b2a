"""Test helpers: a small fitted net, and exact reference SDFs as a Warp field (the interface of ``kernels.mlp_eval.NeuralField``) for the tests.

One shape per parameter row ``(kind, a, b, c)``: kind 0 sphere of radius a; 1 box of half extents
(a, b, c); 2 torus around the z axis, major radius a, minor radius b. Negative inside.
"""

import functools
from dataclasses import dataclass

import numpy as np
import warp as wp

from kernels.mlp_eval import point_by_point

SPHERE, BOX, TORUS = 0.0, 1.0, 2.0


@wp.func
def _exact(q: wp.vec4, p: wp.vec3) -> float:
    if q[0] == 0.0:
        return wp.length(p) - q[1]
    if q[0] == 1.0:
        d = wp.vec3(wp.abs(p[0]) - q[1], wp.abs(p[1]) - q[2], wp.abs(p[2]) - q[3])
        outside = wp.length(wp.vec3(wp.max(d[0], 0.0), wp.max(d[1], 0.0), wp.max(d[2], 0.0)))
        return outside + wp.min(wp.max(d[0], wp.max(d[1], d[2])), 0.0)
    ring = wp.sqrt(p[0] * p[0] + p[1] * p[1]) - q[1]
    return wp.sqrt(ring * ring + p[2] * p[2]) - q[2]


@wp.func
def _value(params: wp.array2d(dtype=wp.vec4), s: int, p: wp.vec3) -> float:
    return _exact(params[s, 0], p)


@wp.func
def _value_and_gradient(params: wp.array2d(dtype=wp.vec4), s: int, p: wp.vec3) -> wp.vec4:
    q = params[s, 0]
    h = 1.0e-3  # central differences of an exact SDF: gradients to ~1e-6
    gx = _exact(q, p + wp.vec3(h, 0.0, 0.0)) - _exact(q, p - wp.vec3(h, 0.0, 0.0))
    gy = _exact(q, p + wp.vec3(0.0, h, 0.0)) - _exact(q, p - wp.vec3(0.0, h, 0.0))
    gz = _exact(q, p + wp.vec3(0.0, 0.0, h)) - _exact(q, p - wp.vec3(0.0, 0.0, h))
    return wp.vec4(_exact(q, p), gx / (2.0 * h), gy / (2.0 * h), gz / (2.0 * h))


@dataclass(frozen=True)
class AnalyticField:
    """A Warp field (``kernels.mlp_eval.NeuralField``'s interface) from single-point functions."""

    key: str = "analytic"
    value: wp.Function = _value
    value_and_gradient: wp.Function = _value_and_gradient
    param_dtype: type = wp.vec4

    @functools.cached_property
    def _packets(self) -> tuple[wp.Function, wp.Function]:
        return point_by_point(self.param_dtype, self.value, self.value_and_gradient)

    @property
    def values(self) -> wp.Function:
        return self._packets[0]

    @property
    def values_and_gradients(self) -> wp.Function:
        return self._packets[1]


FIELD = AnalyticField()


def params(*shapes: tuple[float, float, float, float]) -> np.ndarray:
    """(shapes, 1, 4) float32 parameter rows."""
    return np.asarray(shapes, dtype=np.float32).reshape(-1, 1, 4)


@functools.cache
def fit_sphere(radius: float = 0.5, steps: int = 300, seed: int = 0):
    """A default-architecture net fitted to a sphere's SDF (seeded, a few seconds, once per session): its Weights.

    Deliberately short: surface error ~0.007 mean, gradient norms up to ~2.8, a realistic imperfect net.
    """
    import torch

    from backend.shapes.architecture import Architecture, random_family
    from backend.shapes.network import BatchedSDF

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: one thread is as fast, and immune to a busy second core
    model = BatchedSDF(Architecture(), [random_family(Architecture(), seed).initial_weights])
    optimiser = torch.optim.Adam(model.parameters(), 2e-3)
    for _ in range(steps):
        uniform = rng.uniform(-1, 1, (2048, 3))
        directions = rng.normal(size=(2048, 3))
        near = (
            directions / np.linalg.norm(directions, axis=1, keepdims=True) * (radius + rng.laplace(0, 0.02, (2048, 1)))
        )
        points = torch.from_numpy(np.concatenate([uniform, near]).astype(np.float32))[None]
        loss = (model(points) - (points.norm(dim=-1) - radius)).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    torch.set_num_threads(threads)
    return model.shape_weights(0)
