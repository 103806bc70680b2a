"""The neural SDF as data, numpy only: its architecture, weights and model families.

Default architecture (Davies et al.): 3 -> 8 hidden layers of 32 ReLU -> 1 with tanh, 7553 parameters.
A SIREN variant (sine activations, Sitzmann et al.) is selectable.

A *model family* is an architecture plus one shared set of initial weights: every shape of a family
starts fitting from those weights (nf2vec relies on it), and its ``family_id`` is stored in each file.
A meta-learned family (Meta-SGD, :mod:`backend.fitting.meta_learning`) also holds per-parameter inner learning
rates: fitting starts with ``inner_steps`` plain gradient steps at those rates.

Weights are kept as in ``torch.nn.Linear``: per layer ``weight`` (out, in) and ``bias`` (out,).
Input: points in the normalised frame; output: signed distance, negative inside.
The torch network is :mod:`backend.shapes.network`; Warp evaluates the same layout in :mod:`kernels.mlp_eval`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Activation = Literal["relu", "sine"]
OutputActivation = Literal["tanh", "none"]
ACTIVATIONS: tuple[str, ...] = ("relu", "sine")
OUTPUT_ACTIVATIONS: tuple[str, ...] = ("tanh", "none")

# The largest network anything accepts: fitting (CLI, API) and every .h5 file read. One bound for both,
# so a file from elsewhere cannot ask for more memory or compute than a fit here may use.
MAX_HIDDEN_LAYERS = 62
MAX_WIDTH = 1024
MAX_PARAMETERS = 4_000_000  # 16 MB of float32 weights; 1024 wide allows up to 4 hidden layers


@dataclass(frozen=True)
class Architecture:
    """Layer sizes and activations of one neural SDF."""

    hidden_layers: int = 8
    width: int = 32
    activation: Activation = "relu"
    output_activation: OutputActivation = "tanh"
    sine_w0: float = 30.0  # SIREN frequency factor; unused for ReLU

    def __post_init__(self) -> None:
        if self.hidden_layers < 1 or self.width < 1:
            raise ValueError(f"need at least one hidden layer of width >= 1, got {self.hidden_layers} x {self.width}")
        if self.activation not in ACTIVATIONS or self.output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"unknown activation '{self.activation}' / output activation '{self.output_activation}'")
        limits = (
            ("hidden layers", self.hidden_layers, MAX_HIDDEN_LAYERS),
            ("width", self.width, MAX_WIDTH),
            ("parameters", self.parameter_count, MAX_PARAMETERS),
        )
        over = [f"{name} {value:,} > {limit:,}" for name, value, limit in limits if value > limit]
        if over:
            raise ValueError(f"a {self.hidden_layers}x{self.width} network is too large: {', '.join(over)}")

    @classmethod
    def for_activation(cls, activation: Activation = "relu", hidden_layers: int = 8, width: int = 32) -> Architecture:
        """The product's pairing: ReLU with a tanh output (the paper's), SIREN with a linear output."""
        return cls(
            hidden_layers=hidden_layers,
            width=width,
            activation=activation,
            output_activation="tanh" if activation == "relu" else "none",
        )

    @property
    def layer_sizes(self) -> list[int]:
        """Feature sizes from input to output, e.g. [3, 32, ..., 32, 1]."""
        return [3] + [self.width] * self.hidden_layers + [1]

    @property
    def parameter_count(self) -> int:
        sizes = self.layer_sizes
        return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))

    def describe(self) -> str:
        return f"{self.hidden_layers}x{self.width} {self.activation} -> {self.output_activation}"


Weights = list[tuple[np.ndarray, np.ndarray]]  # per layer: weight (out, in), bias (out,), float32


def flatten(weights: Weights) -> np.ndarray:
    """Flat weights (P,) float32 of one net: per layer weight (out, in) row-major, then bias (out,)."""
    return np.concatenate([part.astype(np.float32).ravel() for layer in weights for part in layer])


def unflatten(architecture: Architecture, flat: np.ndarray) -> Weights:
    """The inverse of :func:`flatten`: flat (P,) -> per layer weight (out, in) and bias (out,), float32 copies."""
    sizes, out, start = architecture.layer_sizes, [], 0
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        weight = flat[start : start + fan_out * fan_in].reshape(fan_out, fan_in)
        start += fan_out * fan_in
        out.append((weight.astype(np.float32, copy=True), flat[start : start + fan_out].astype(np.float32, copy=True)))
        start += fan_out
    return out


def reframed(weights: Weights, centre: np.ndarray, scale: float) -> Weights:
    """The same shape as ``weights`` in a new frame ``x_new = scale * (x - centre)`` (x: the net's frame).

    The first layer takes the change of coordinates, ``f(centre + x_new / scale)``, so the zero level set is
    exactly the old one moved; the last layer's output is multiplied by ``scale`` so distances are in new
    units: exactly for a linear output, to first order at the surface for tanh (tanh(u) ~ u near 0).
    """
    out = [(weight.copy(), bias.copy()) for weight, bias in weights]
    first, first_bias = weights[0]
    out[0] = ((first / scale).astype(np.float32), (first @ np.asarray(centre) + first_bias).astype(np.float32))
    last, last_bias = out[-1]
    out[-1] = ((last * scale).astype(np.float32), (last_bias * scale).astype(np.float32))
    return out


@dataclass(frozen=True)
class ModelFamily:
    """An architecture with the initial weights every shape of the family starts from."""

    name: str
    architecture: Architecture
    initial_weights: Weights
    inner_learning_rates: Weights | None = None  # Meta-SGD step sizes, shaped like the weights
    inner_steps: int = 0  # gradient steps at those rates that start every fit
    inner_batch: int = 0  # points per shape in each of those steps
    provenance: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def is_meta_learned(self) -> bool:
        return self.inner_learning_rates is not None and self.inner_steps > 0

    @property
    def family_id(self) -> str:
        """``name-<12 hex>``: the hash covers architecture and initial weights, so ids never collide silently."""
        digest = hashlib.sha256(repr(self.architecture).encode())
        for weight, bias in self.initial_weights:
            digest.update(weight.tobytes())
            digest.update(bias.tobytes())
        return f"{self.name}-{digest.hexdigest()[:12]}"


def random_family(architecture: Architecture = Architecture(), seed: int = 0) -> ModelFamily:
    """A family whose shared initial weights are drawn from a seed (numpy, so identical on every machine).

    ReLU: He-uniform weights, small uniform biases. SIREN: the initialisation of Sitzmann et al.
    """
    rng = np.random.default_rng(seed)
    sizes = architecture.layer_sizes
    weights: Weights = []
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if architecture.activation == "sine":
            bound = 1.0 / fan_in if layer == 0 else np.sqrt(6.0 / fan_in) / architecture.sine_w0
        else:
            bound = np.sqrt(6.0 / fan_in)
        weight = rng.uniform(-bound, bound, size=(fan_out, fan_in)).astype(np.float32)
        bias = rng.uniform(-1.0 / np.sqrt(fan_in), 1.0 / np.sqrt(fan_in), size=fan_out).astype(np.float32)
        weights.append((weight, bias))
    name = f"random-{architecture.activation}{architecture.hidden_layers}x{architecture.width}-seed{seed}"
    return ModelFamily(name=name, architecture=architecture, initial_weights=weights)
