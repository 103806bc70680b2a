# Neural SDF evaluation inside Warp kernels: value and analytic gradient of the per-shape MLP.
#
# Every architecture the fitter writes (ReLU + tanh, SIREN sine + none, any depth and width) gets its
# own ``@wp.func``s, generated once per architecture: the whole network is one function call inside a
# kernel (no launch per layer), and many shapes of one architecture share one launch.
#
# Layout (measured, see docs/kernels.md): a per-thread ``mat * vec`` is about 10x slower on the CPU
# than accumulating weight *columns* scaled by the input features (``acc += W[:, i] * h[i]``), which
# the compiler turns into wide vector FMAs; two accumulators hide the FMA latency. The weights of one
# shape are one row of width-``W`` vectors:
#
#   rows 0..2          first layer columns W0[:, k]          row 3   bias b0
#   per hidden layer   W columns W[:, i], then W rows W[j, :] (for the backward pass), then its bias
#   last two rows      output weights W_out[0, :], then [b_out, 0, ...]
#
# Kernels evaluate *packets* of LANES points per thread: each weight column, loaded once, feeds one
# accumulator chain per point (1.7x the points/s of one point per thread on the CPU), in the same
# order as the single-point functions, so both give bitwise the same values.
#
# Input points are in the normalised frame; output is the signed distance, negative inside.
#
# No ``from __future__ import annotations`` here: Warp reads the closure types of the generated functions.


import functools
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import warp as wp

from kernels.device import default_device, init_warp, run_chunked

LANES = 4  # points per packet (see NeuralField.values)
# Options of every kernel that evaluates a field: the loops over units and lanes must unroll (Warp's
# default of 16 leaves the 32-unit loops rolled: 10x slower).
FIELD_KERNEL_OPTIONS = {"max_unroll": 64}
Packet = wp.types.matrix(shape=(LANES, 3), dtype=wp.float32)  # LANES points, one per row
PacketValues = wp.types.vector(length=LANES, dtype=wp.float32)
PacketGradients = wp.types.matrix(shape=(LANES, 4), dtype=wp.float32)  # per row: value, gradient

ACTIVATIONS = ("relu", "sine")
OUTPUT_ACTIVATIONS = ("tanh", "none")

Weights = list[tuple[np.ndarray, np.ndarray]]  # one shape, per layer: weight (out, in), bias (out,), float32


class MlpLayout(Protocol):
    """What the kernels read of a network's architecture (``backend.shapes.architecture.Architecture`` fits).

    3 inputs -> ``hidden_layers`` layers of ``width`` units (``activation`` "relu", or "sine": sin(w0 z)
    with w0 = ``sine_w0``) -> 1 output (``output_activation`` "tanh" or "none"). Hashable (a frozen
    dataclass): :func:`neural_field` caches one field per architecture object.
    """

    @property
    def hidden_layers(self) -> int: ...
    @property
    def width(self) -> int: ...
    @property
    def activation(self) -> str: ...
    @property
    def output_activation(self) -> str: ...
    @property
    def sine_w0(self) -> float: ...


def _check_layout(layout: MlpLayout) -> None:
    if layout.hidden_layers < 1 or layout.width < 1:
        raise ValueError(f"need at least one hidden layer of width >= 1, got {layout.hidden_layers} x {layout.width}")
    if layout.activation not in ACTIVATIONS or layout.output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"unknown activation '{layout.activation}' / output activation '{layout.output_activation}'")


@dataclass(frozen=True)
class NeuralField:
    """The Warp functions of one architecture; a *field* as the tracer and marching cubes expect it.

    ``value(params, shape, p) -> float`` and ``value_and_gradient(params, shape, p) -> vec4`` (value,
    d/dx, d/dy, d/dz) read shape ``shape``'s row of ``params`` (``wp.array2d(dtype=param_dtype)``, see
    :meth:`pack`) at a point ``p`` of the normalised frame. ``values(params, shape, points: Packet) ->
    PacketValues`` and ``values_and_gradients(...) -> PacketGradients`` do the same for ``LANES`` points
    of one shape at once (same results, bitwise); kernels calling them take
    ``module_options=FIELD_KERNEL_OPTIONS``.
    """

    architecture: MlpLayout
    param_dtype: type
    value: wp.Function
    value_and_gradient: wp.Function
    values: wp.Function
    values_and_gradients: wp.Function

    @property
    def key(self) -> str:
        return "mlp-" + repr(self.architecture)

    def rows(self) -> int:
        arch = self.architecture
        return 4 + (arch.hidden_layers - 1) * (2 * arch.width + 1) + 2

    def pack(self, weights: list[Weights]) -> np.ndarray:
        """Weights of several shapes -> (shapes, rows, width) float32 in the layout above."""
        arch = self.architecture
        sizes = [3] + [arch.width] * arch.hidden_layers + [1]  # features from input to output
        out = np.zeros((len(weights), self.rows(), arch.width), dtype=np.float32)
        for s, layers in enumerate(weights):
            if len(layers) != len(sizes) - 1:
                raise ValueError(
                    f"shape {s} has {len(layers)} layers, the architecture {arch.hidden_layers}x{arch.width} needs {len(sizes) - 1}"
                )
            for layer, (weight, bias) in enumerate(layers):
                expected = (sizes[layer + 1], sizes[layer])
                if np.shape(weight) != expected or np.shape(bias) != (sizes[layer + 1],):
                    raise ValueError(
                        f"shape {s} layer {layer}: weight {np.shape(weight)} / bias {np.shape(bias)}, expected {expected}"
                    )
            (w0, b0), hidden, (w_out, b_out) = layers[0], layers[1:-1], layers[-1]
            out[s, 0:3] = np.asarray(w0, dtype=np.float32).T
            out[s, 3] = b0
            row = 4
            for weight, bias in hidden:
                out[s, row : row + arch.width] = np.asarray(weight, dtype=np.float32).T
                out[s, row + arch.width : row + 2 * arch.width] = weight
                out[s, row + 2 * arch.width] = bias
                row += 2 * arch.width + 1
            out[s, row] = np.asarray(w_out, dtype=np.float32)[0]
            out[s, row + 1, 0] = np.asarray(b_out, dtype=np.float32)[0]
        return out


@functools.cache
def neural_field(architecture: MlpLayout) -> NeuralField:
    """The (cached) Warp field of an architecture; kernels compile lazily on first launch."""
    _check_layout(architecture)
    init_warp()
    width, hidden = architecture.width, architecture.hidden_layers
    sine, tanh_out = architecture.activation == "sine", architecture.output_activation == "tanh"
    w0 = float(architecture.sine_w0)
    vec = wp.types.vector(length=width, dtype=wp.float32)
    factors_type = wp.types.matrix(shape=(hidden, width), dtype=wp.float32)
    layer_rows = 2 * width + 1
    out_row = 4 + (hidden - 1) * layer_rows

    @wp.func
    def accumulate(params: wp.array2d(dtype=vec), s: int, base: int, h: vec, acc: vec):
        # acc + sum_i params[s, base + i] * h[i], on two independent FMA chains.
        a = acc
        b = vec()
        for i in range(0, width - 1, 2):
            a = a + params[s, base + i] * h[i]
            b = b + params[s, base + i + 1] * h[i + 1]
        if wp.static(width % 2 == 1):
            a = a + params[s, base + width - 1] * h[width - 1]
        return a + b

    @wp.func
    def activate(z: vec):
        if wp.static(sine):
            h = vec()
            for j in range(width):
                h[j] = wp.sin(w0 * z[j])
            return h
        return wp.max(z, vec())

    @wp.func
    def activation_slope(z: vec):
        d = vec()
        for j in range(width):
            if wp.static(sine):
                d[j] = w0 * wp.cos(w0 * z[j])
            elif z[j] > 0.0:
                d[j] = 1.0
        return d

    @wp.func
    def first_layer(params: wp.array2d(dtype=vec), s: int, p: wp.vec3):
        return params[s, 3] + params[s, 0] * p[0] + params[s, 1] * p[1] + params[s, 2] * p[2]

    @wp.func
    def output(params: wp.array2d(dtype=vec), s: int, h: vec):
        o = wp.dot(params[s, out_row], h) + params[s, out_row + 1][0]
        if wp.static(tanh_out):
            return wp.tanh(o)
        return o

    @wp.func
    def value(params: wp.array2d(dtype=vec), s: int, p: wp.vec3) -> float:
        h = activate(first_layer(params, s, p))
        for layer in range(hidden - 1):
            base = 4 + layer * layer_rows
            h = activate(accumulate(params, s, base, h, params[s, base + 2 * width]))
        return output(params, s, h)

    @wp.func
    def value_and_gradient(params: wp.array2d(dtype=vec), s: int, p: wp.vec3) -> wp.vec4:
        # Forward keeping each hidden layer's activation slope, then the backward pass: g = dvalue/dh.
        factors = factors_type()
        z = first_layer(params, s, p)
        factors[0] = activation_slope(z)
        h = activate(z)
        for layer in range(hidden - 1):
            base = 4 + layer * layer_rows
            z = accumulate(params, s, base, h, params[s, base + 2 * width])
            factors[layer + 1] = activation_slope(z)
            h = activate(z)
        f = output(params, s, h)
        g = params[s, out_row]
        if wp.static(tanh_out):
            g = g * (1.0 - f * f)
        for back in range(hidden - 1):
            layer = hidden - 2 - back
            g = wp.cw_mul(g, factors[layer + 1])
            g = accumulate(params, s, 4 + layer * layer_rows + width, g, vec())  # W^T g from the rows of W
        g = wp.cw_mul(g, factors[0])
        return wp.vec4(f, wp.dot(params[s, 0], g), wp.dot(params[s, 1], g), wp.dot(params[s, 2], g))

    hidden_type = wp.types.matrix(shape=(LANES, width), dtype=wp.float32)  # one row per lane
    lane_factors_type = wp.types.matrix(shape=(hidden * LANES, width), dtype=wp.float32)

    @wp.func
    def accumulate_lanes(params: wp.array2d(dtype=vec), s: int, base: int, h: hidden_type, start: vec):
        # accumulate() for every lane, the same two chains in the same order (so value() and values()
        # agree bitwise); each weight column, loaded once, feeds all lanes, which keeps the CPU's vector
        # units busy (measured 1.7x the points/s of one point per thread).
        a = hidden_type()
        b = hidden_type()
        for r in range(LANES):
            a[r] = start
        for i in range(0, width - 1, 2):
            even, odd = params[s, base + i], params[s, base + i + 1]
            for r in range(LANES):
                a[r] = a[r] + even * h[r, i]
                b[r] = b[r] + odd * h[r, i + 1]
        for r in range(LANES):
            if wp.static(width % 2 == 1):
                a[r] = a[r] + params[s, base + width - 1] * h[r, width - 1]
            a[r] = a[r] + b[r]
        return a

    @wp.func
    def values(params: wp.array2d(dtype=vec), s: int, points: Packet):
        h = hidden_type()
        for r in range(LANES):
            h[r] = activate(first_layer(params, s, points[r]))
        for layer in range(hidden - 1):
            base = 4 + layer * layer_rows
            z = accumulate_lanes(params, s, base, h, params[s, base + 2 * width])
            for r in range(LANES):
                h[r] = activate(z[r])
        out = PacketValues()
        for r in range(LANES):
            out[r] = output(params, s, h[r])
        return out

    @wp.func
    def values_and_gradients(params: wp.array2d(dtype=vec), s: int, points: Packet):
        # value_and_gradient() of LANES points: row r = (value, d/dx, d/dy, d/dz) of point r.
        factors = lane_factors_type()  # row layer * LANES + r: lane r's activation slopes
        h = hidden_type()
        for r in range(LANES):
            z0 = first_layer(params, s, points[r])
            factors[r] = activation_slope(z0)
            h[r] = activate(z0)
        for layer in range(hidden - 1):
            base = 4 + layer * layer_rows
            z = accumulate_lanes(params, s, base, h, params[s, base + 2 * width])
            for r in range(LANES):
                factors[(layer + 1) * LANES + r] = activation_slope(z[r])
                h[r] = activate(z[r])
        out = PacketGradients()
        g = hidden_type()
        for r in range(LANES):
            f = output(params, s, h[r])
            out[r, 0] = f
            g[r] = params[s, out_row]
            if wp.static(tanh_out):
                g[r] = g[r] * (1.0 - f * f)
        for back in range(hidden - 1):
            layer = hidden - 2 - back
            for r in range(LANES):
                g[r] = wp.cw_mul(g[r], factors[(layer + 1) * LANES + r])
            g = accumulate_lanes(params, s, 4 + layer * layer_rows + width, g, vec())
        for r in range(LANES):
            gr = wp.cw_mul(g[r], factors[r])
            out[r, 1] = wp.dot(params[s, 0], gr)
            out[r, 2] = wp.dot(params[s, 1], gr)
            out[r, 3] = wp.dot(params[s, 2], gr)
        return out

    return NeuralField(architecture, vec, value, value_and_gradient, values, values_and_gradients)


def point_by_point(
    param_dtype: type, value: wp.Function, value_and_gradient: wp.Function
) -> tuple[wp.Function, wp.Function]:
    """Packet functions (``values``, ``values_and_gradients``) for a field that only has single-point ones."""

    @wp.func
    def values(params: wp.array2d(dtype=param_dtype), s: int, points: Packet):
        out = PacketValues()
        for r in range(LANES):
            out[r] = value(params, s, points[r])
        return out

    @wp.func
    def values_and_gradients(params: wp.array2d(dtype=param_dtype), s: int, points: Packet):
        out = PacketGradients()
        for r in range(LANES):
            out[r] = value_and_gradient(params, s, points[r])
        return out

    return values, values_and_gradients


@functools.cache
def _batch_kernel(field, gradients: bool) -> wp.Kernel:
    """Batch kernel of a field: point i belongs to shape ``first_shape + i // per_shape``; one packet of
    ``LANES`` consecutive points per thread from ``offset`` to ``stop`` (the last packet repeats the last point)."""

    @wp.kernel(enable_backward=False, module="unique", module_options=FIELD_KERNEL_OPTIONS)
    def batch_kernel(
        params: wp.array2d(dtype=field.param_dtype),
        points: wp.array(dtype=wp.vec3),
        first_shape: int,
        per_shape: int,
        offset: int,
        stop: int,
        out_values: wp.array(dtype=float),
        out_gradients: wp.array(dtype=wp.vec3),
    ):
        first = offset + wp.tid() * LANES
        packet = Packet()
        for r in range(LANES):
            packet[r] = points[wp.min(first + r, stop - 1)]
        shape = first_shape + first // per_shape
        if shape == first_shape + (wp.min(first + LANES, stop) - 1) // per_shape:
            if wp.static(gradients):
                v = field.values_and_gradients(params, shape, packet)
                for r in range(LANES):
                    if first + r < stop:
                        out_values[first + r] = v[r, 0]
                        out_gradients[first + r] = wp.vec3(v[r, 1], v[r, 2], v[r, 3])
            else:
                v = field.values(params, shape, packet)
                for r in range(LANES):
                    if first + r < stop:
                        out_values[first + r] = v[r]
        else:  # the packet straddles two shapes: point by point
            for r in range(LANES):
                i = first + r
                if i < stop:
                    if wp.static(gradients):
                        g = field.value_and_gradient(params, first_shape + i // per_shape, points[i])
                        out_values[i] = g[0]
                        out_gradients[i] = wp.vec3(g[1], g[2], g[3])
                    else:
                        out_values[i] = field.value(params, first_shape + i // per_shape, points[i])

    return batch_kernel


@wp.kernel(enable_backward=False)
def _clip_kernel(
    points: wp.array(dtype=wp.vec3), radius: float, values: wp.array(dtype=float), gradients: wp.array(dtype=wp.vec3)
):
    # max(f, |p| - radius): the field intersected with a sphere (gradient of the chosen term).
    i = wp.tid()
    p = points[i]
    sphere = wp.length(p) - radius
    if sphere > values[i]:
        values[i] = sphere
        if gradients.shape[0] > 0:
            gradients[i] = wp.normalize(p)


def launch_field(
    field,
    params: wp.array,
    points: wp.array,
    out_values: wp.array,
    out_gradients: wp.array | None = None,
    first_shape: int = 0,
    per_shape: int | None = None,
    clip_radius: float | None = None,
) -> None:
    """Evaluate a field at device points into device arrays, split over CPU threads; no host sync on a GPU.

    points : (n,) vec3, normalised frame; out_values : (n,) float32, negative inside; out_gradients :
    (n,) vec3 or None. Point i belongs to shape ``first_shape + i // per_shape`` (one shape by default).
    clip_radius : intersect the field with the sphere of that radius around the origin (normalised
    units; drops stray far surfaces), or None.
    """
    n = points.shape[0]
    kernel = _batch_kernel(field, out_gradients is not None)
    per_shape = per_shape or max(n, 1)
    gradients = out_gradients if out_gradients is not None else wp.empty(0, dtype=wp.vec3, device=points.device)

    def run(start: int, stop: int) -> None:
        inputs = [params, points, first_shape, per_shape, start, stop]
        wp.launch(
            kernel,
            dim=-(-(stop - start) // LANES),
            inputs=inputs,
            outputs=[out_values, gradients],
            device=points.device,
        )

    run_chunked(str(points.device), n, run)
    if clip_radius is not None:
        wp.launch(
            _clip_kernel,
            dim=n,
            inputs=[points, float(clip_radius)],
            outputs=[out_values, gradients],
            device=points.device,
        )


def _evaluate(
    architecture: MlpLayout, weights: list[Weights], points: np.ndarray, gradients: bool, device: str | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Values and (with ``gradients``) gradients for :func:`evaluate` and :func:`evaluate_with_gradient`."""
    points = np.asarray(points)
    single = points.ndim == 2
    batched = points[None] if single else points
    if batched.ndim != 3 or batched.shape[-1] != 3 or batched.shape[0] != len(weights):
        raise ValueError(f"points must be (shapes={len(weights)}, n, 3) or (n, 3) for one shape, got {points.shape}")
    if not np.issubdtype(points.dtype, np.floating):
        raise ValueError(f"points must be floating point, got {points.dtype}")
    field = neural_field(architecture)
    device = default_device(device)
    shapes, n = batched.shape[:2]
    values = wp.zeros(shapes * n, dtype=float, device=device)
    out_gradients = wp.zeros(shapes * n, dtype=wp.vec3, device=device) if gradients else None
    if shapes * n:
        params = wp.array(field.pack(weights), dtype=field.param_dtype, device=device)
        flat = wp.array(np.ascontiguousarray(batched, dtype=np.float32).reshape(-1, 3), dtype=wp.vec3, device=device)
        launch_field(field, params, flat, values, out_gradients, per_shape=n)
    lead = (n,) if single else (shapes, n)
    host_values = values.numpy().reshape(lead)  # host sync
    return host_values, None if out_gradients is None else out_gradients.numpy().reshape(lead + (3,))


def evaluate(
    architecture: MlpLayout, weights: list[Weights], points: np.ndarray, device: str | None = None
) -> np.ndarray:
    """Signed distances of several shapes of one architecture, in one launch.

    points : (s, n, 3) float, normalised frame, one set per shape (``len(weights) == s``); (n, 3) with
    one shape is accepted too. Returns values (s, n) float32 (or (n,) for (n, 3) input), normalised
    units, negative inside. Agrees with ``backend.shapes.network.evaluate_sdf`` to float32 round-off.
    """
    return _evaluate(architecture, weights, points, False, device)[0]


def evaluate_with_gradient(
    architecture: MlpLayout, weights: list[Weights], points: np.ndarray, device: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Signed distances and their analytic gradients d value / d point, in one launch.

    points as for :func:`evaluate`. Returns values (s, n) float32, negative inside, and gradients
    (s, n, 3) float32 in the normalised frame (or (n,) and (n, 3) for (n, 3) input).
    """
    return _evaluate(architecture, weights, points, True, device)


@dataclass(frozen=True)
class LipschitzBound:
    """Bounds of one shape's gradient norm over the cube [-1, 1]^3 (normalised frame, per unit length).

    ``near`` holds where |f| <= ``band`` (around the surface), ``far`` everywhere. Both are at least 1.
    """

    near: float
    far: float
    band: float


def lipschitz_bound(
    architecture: MlpLayout,
    weights: Weights,
    margin: float = 1.5,
    band: float = 0.1,
    samples_per_axis: int = 48,
    seed: int = 0,
    device: str | None = None,
) -> LipschitzBound:
    """Safe Lipschitz bounds of one shape's SDF, near its surface and everywhere in the cube.

    A neural SDF is only roughly 1-Lipschitz. Gradient norms are taken at one jittered sample per cell
    of a ``samples_per_axis``^3 grid (seeded) plus the grid's nodes; the largest over all samples, and
    over the samples with |f| <= ``band``, are multiplied by ``margin``. Each bound is at least 1 and
    at most the product of the layers' spectral norms (the exact worst case, times w0 per sine layer).
    See docs/kernels.md.
    """
    rng = np.random.default_rng(seed)
    k = samples_per_axis
    cells = np.stack(np.meshgrid(*(np.arange(k),) * 3, indexing="ij"), -1).reshape(-1, 3)
    jittered = (cells + rng.random(cells.shape)) * (2.0 / k) - 1.0
    nodes = np.stack(np.meshgrid(*(np.linspace(-1.0, 1.0, k + 1),) * 3, indexing="ij"), -1).reshape(-1, 3)
    points = np.concatenate([jittered, nodes]).astype(np.float32)
    values, gradients = evaluate_with_gradient(architecture, [weights], points, device=device)
    norms = np.linalg.norm(gradients, axis=1)
    near = np.abs(values) <= band
    worst = 1.0
    for layer, (weight, _) in enumerate(weights):
        worst *= float(np.linalg.norm(weight, 2))
        if architecture.activation == "sine" and layer < len(weights) - 1:
            worst *= architecture.sine_w0
    cap = max(1.0, worst)
    far = min(max(1.0, margin * float(norms.max())), cap)
    near_bound = min(max(1.0, margin * float(norms[near].max())), far) if near.any() else far
    return LipschitzBound(near=near_bound, far=far, band=band)
