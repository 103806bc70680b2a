"""Warp MLP evaluation against the torch forward pass and autograd, on every available device."""

import numpy as np
import pytest
import torch

from backend.shapes.architecture import Architecture, random_family
from backend.shapes.network import BatchedSDF
from kernels.device import init_warp
from kernels.mlp_eval import evaluate, evaluate_with_gradient, lipschitz_bound, neural_field
from tests.fields import fit_sphere

init_warp()
ARCHITECTURES = [
    Architecture(),
    Architecture(activation="sine", output_activation="none"),
    Architecture(hidden_layers=3, width=17, output_activation="none"),
]


def _torch(architecture, weights, points):
    """Values and gradients from the torch reference in float64 (exact enough to judge float32)."""
    model = BatchedSDF(architecture, weights).double()
    x = torch.from_numpy(points.astype(np.float64)).requires_grad_(True)
    y = model(x)
    y.sum().backward()
    return y.detach().numpy(), x.grad.numpy()


@pytest.mark.parametrize("architecture", ARCHITECTURES, ids=lambda a: a.describe())
def test_values_and_gradients_match_torch(architecture, device):
    weights = [random_family(architecture, seed).initial_weights for seed in range(3)]
    # 4001 points per shape: packets of four points straddle shapes and the last one is part-full.
    points = np.random.default_rng(0).uniform(-1, 1, (3, 4001, 3)).astype(np.float32)
    values, gradients = evaluate_with_gradient(architecture, weights, points, device=device)
    ref_values, ref_gradients = _torch(architecture, weights, points)
    assert values.shape == (3, 4001) and gradients.shape == (3, 4001, 3)
    assert np.abs(values - ref_values).max() <= 1e-5
    # A ReLU kink within float32 round-off of a point flips one mask: allow 0.1 % of such points.
    error = np.abs(gradients - ref_gradients).max(axis=-1) / np.maximum(1.0, np.abs(ref_gradients).max(axis=-1))
    assert np.mean(error <= 1e-4) >= 0.999
    assert np.abs(evaluate(architecture, weights, points, device=device) - values).max() == 0.0
    # Packets and single points round alike: the same points packed differently give the same bits.
    np.testing.assert_array_equal(evaluate(architecture, weights[1:], points[1:, 1:], device=device), values[1:, 1:])


def test_single_shape_and_empty_batches():
    arch = Architecture()
    weights = random_family(arch, 1).initial_weights
    points = np.random.default_rng(1).uniform(-1, 1, (100, 3))
    assert evaluate(arch, [weights], points).shape == (100,)
    assert evaluate(arch, [weights], np.zeros((0, 3))).shape == (0,)
    values, gradients = evaluate_with_gradient(arch, [weights], np.zeros((1, 0, 3)))
    assert values.shape == (1, 0) and gradients.shape == (1, 0, 3)


def test_bad_inputs_are_refused():
    arch = Architecture()
    weights = random_family(arch, 0).initial_weights
    with pytest.raises(ValueError, match="points must be"):
        evaluate(arch, [weights, weights], np.zeros((10, 3)))
    with pytest.raises(ValueError, match="points must be"):
        evaluate(arch, [weights], np.zeros((10, 2)))
    with pytest.raises(ValueError, match="layer 1"):
        neural_field(arch).pack([[weights[0], (weights[1][0][:, :5], weights[1][1])] + weights[2:]])


def test_lipschitz_bound_covers_sampled_gradients():
    arch = Architecture()
    weights = fit_sphere()
    bound = lipschitz_bound(arch, weights)
    assert 1.0 <= bound.near <= bound.far
    points = np.random.default_rng(5).uniform(-1, 1, (50_000, 3)).astype(np.float32)
    values, gradients = evaluate_with_gradient(arch, [weights], points)
    norms = np.linalg.norm(gradients, axis=1)
    assert norms.max() <= bound.far
    assert norms[np.abs(values) <= bound.band].max() <= bound.near
    spectral = np.prod([np.linalg.norm(w, 2) for w, _ in weights])
    assert bound.far <= max(1.0, spectral)
