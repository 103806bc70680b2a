"""The MLP, model families and the batched forward (backend.shapes.network)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.shapes.architecture import Architecture, random_family, reframed
from backend.shapes.network import BatchedSDF, evaluate_sdf


def test_default_is_the_papers_net():
    arch = Architecture()
    assert arch.layer_sizes == [3] + [32] * 8 + [1]
    assert arch.parameter_count == 7553
    family = random_family(arch)
    assert sum(w.size + b.size for w, b in family.initial_weights) == 7553
    assert all(w.dtype == np.float32 for w, _ in family.initial_weights)


def test_family_is_deterministic_and_ids_differ():
    a, b = random_family(seed=0), random_family(seed=0)
    assert a.family_id == b.family_id
    assert random_family(seed=1).family_id != a.family_id
    assert random_family(Architecture(activation="sine", output_activation="none")).family_id != a.family_id


@pytest.mark.parametrize(
    "arch", [Architecture(), Architecture(hidden_layers=3, width=16, activation="sine", output_activation="none")]
)
def test_batched_forward_equals_single_forward(arch, rng):
    families = [random_family(arch, seed) for seed in range(3)]
    model = BatchedSDF(arch, [f.initial_weights for f in families])
    points = rng.uniform(-1, 1, size=(3, 500, 3)).astype(np.float32)
    with torch.no_grad():
        batched = model(torch.from_numpy(points)).numpy()
    for i, family in enumerate(families):
        np.testing.assert_allclose(batched[i], evaluate_sdf(arch, family.initial_weights, points[i]), atol=1e-6)
        # And against a plain numpy forward of the documented formula.
        h = points[i].astype(np.float64)
        for layer, (w, b) in enumerate(family.initial_weights):
            h = h @ w.T + b
            if layer < len(family.initial_weights) - 1:
                h = np.sin(arch.sine_w0 * h) if arch.activation == "sine" else np.maximum(h, 0)
        h = np.tanh(h[:, 0]) if arch.output_activation == "tanh" else h[:, 0]
        np.testing.assert_allclose(batched[i], h, atol=1e-5)


def test_bad_architecture():
    with pytest.raises(ValueError):
        Architecture(hidden_layers=0)
    with pytest.raises(ValueError):
        Architecture(activation="gelu")


@pytest.mark.parametrize("arch", [Architecture(), Architecture.for_activation("sine", hidden_layers=3, width=16)])
def test_reframed_weights_are_the_same_field_in_the_new_frame(arch, rng):
    weights = random_family(arch, seed=2).initial_weights
    centre, scale = np.array([0.1, -0.2, 0.3]), 1.3
    points = rng.uniform(-0.5, 0.5, size=(400, 3))
    old = evaluate_sdf(arch, weights, points.astype(np.float32))
    new = evaluate_sdf(arch, reframed(weights, centre, scale), (scale * (points - centre)).astype(np.float32))
    if arch.output_activation == "none":  # distances in new units, exactly
        np.testing.assert_allclose(new, scale * old, rtol=1e-4, atol=1e-5)
    else:  # the output's pre-activation scaled: tanh(s u), ~ s tanh(u) at the surface
        np.testing.assert_allclose(new, np.tanh(scale * np.arctanh(old)), rtol=1e-4, atol=1e-5)
