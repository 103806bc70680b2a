"""The Meta-SGD inner loop: plain gradient steps ``phi <- phi - alpha * grad L1`` at per-parameter rates.

Shared by meta-training (:mod:`backend.fitting.meta_learning`, which differentiates through it) and fitting
from a meta-learned family (:mod:`backend.fitting.batched`, which runs it once before Adam). Parameters are
lists of stacked tensors, one row per shape, as :func:`backend.shapes.network.batched_forward` takes them.
"""

from __future__ import annotations

import numpy as np
import torch

from backend.shapes.architecture import Architecture, ModelFamily, Weights
from backend.shapes.network import batched_forward, stacked_parameters

Parameters = list[torch.Tensor]  # per layer weight (s, out, in), then per layer bias (s, out)


def draw_samples(
    points: torch.Tensor,
    sdf: torch.Tensor,
    count: int,
    generator: torch.Generator,
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` samples per shape drawn with replacement: points (s, m, 3), sdf (s, m) -> (r, count, 3), (r, count).

    ``rows`` (r,): the shapes to draw for (all by default), gathered straight from the pools: copying the
    pools of the shapes still fitting first would cost more than the step.
    """
    rows = torch.arange(sdf.shape[0]) if rows is None else rows
    index = torch.randint(0, sdf.shape[1], (len(rows), count), generator=generator)
    return points[rows[:, None], index], sdf[rows[:, None], index]


def split_parameters(params: Parameters) -> tuple[Parameters, Parameters]:
    half = len(params) // 2
    return params[:half], params[half:]


def l1_per_shape(
    architecture: Architecture, params: Parameters, points: torch.Tensor, sdf: torch.Tensor
) -> torch.Tensor:
    """Mean |f(points) - sdf| per shape: points (s, n, 3), sdf (s, n) -> (s,)."""
    weights, biases = split_parameters(params)
    return (batched_forward(architecture, weights, biases, points) - sdf).abs().mean(dim=1)


def adapt(
    architecture: Architecture,
    params: Parameters,
    rates: Parameters,
    points: torch.Tensor,
    sdf: torch.Tensor,
    create_graph: bool = False,
) -> Parameters:
    """The Meta-SGD inner loop: one step ``phi - alpha * grad`` per context batch.

    points (s, k, n, 3), sdf (s, k, n): k steps of n points for each of s shapes. Shapes share no
    parameters, so the gradient of the summed losses is each shape's own gradient.
    """
    for step in range(points.shape[1]):
        loss = l1_per_shape(architecture, params, points[:, step], sdf[:, step]).sum()
        grads = torch.autograd.grad(loss, params, create_graph=create_graph)
        params = [p - r * g for p, r, g in zip(params, rates, grads)]
    return params


def family_parameters(family: ModelFamily, shapes: int) -> Parameters:
    """The family's initial weights stacked for ``shapes`` shapes (new leaf tensors)."""
    weights, biases = stacked_parameters([family.initial_weights] * shapes)
    return weights + biases


def family_rates(family: ModelFamily) -> Parameters:
    """The inner learning rates with a leading shape axis of 1, ready to broadcast over shapes."""
    weights, biases = stacked_parameters([family.inner_learning_rates])
    return weights + biases


def weights_of(params: Parameters, row: int = 0) -> Weights:
    weights, biases = split_parameters(params)
    return [
        (w[row].detach().numpy().astype(np.float32), b[row].detach().numpy().astype(np.float32))
        for w, b in zip(weights, biases)
    ]
