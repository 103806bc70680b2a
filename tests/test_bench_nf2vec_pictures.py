"""bench/nf2vec_pictures.py: a contact sheet of a toy latent family has a lit, unclipped shape in every tile and
each row's label on its left (the pictures themselves are looked at by hand on a trained model)."""

import numpy as np
import pytest
import torch
import trimesh

from backend.nf2vec.latent import LatentFamily, LatentPrior, flatten
from backend.nf2vec.ops.latent_ops import prior_sampler
from bench.nf2vec_pictures import generated_sheet
from tests.nf2vec_toolkit import fit_primitives

SIZE = 48

pytestmark = [pytest.mark.usefixtures("single_torch_thread"), pytest.mark.slow]


def test_a_contact_sheet_has_a_shape_in_every_tile_and_its_labels(tmp_path) -> None:
    # boxes, not a ball: a 100-step fit of a ball bulges out to the sphere the tracer clips to, the tile's edge
    trimesh.creation.box(extents=(0.5, 0.8, 0.3)).export(tmp_path / "slab.ply")
    trimesh.creation.box(extents=(1.0, 0.4, 0.6)).export(tmp_path / "box.ply")
    slab, box = fit_primitives(tmp_path, ["slab", "box"])
    # w(z) = slab + z (box - slab): class "slab" around z = 0, class "box" around z = 1
    theta = torch.from_numpy(flatten(slab.weights))
    basis = torch.from_numpy(flatten(box.weights))[None] - theta
    prior = LatentPrior(
        torch.zeros(1), torch.ones(1), ["slab", "box"], torch.tensor([[0.0], [1.0]]), torch.full((2, 1), 0.05)
    )
    latent = LatentFamily(slab.family_id, slab.architecture, theta, basis, prior)
    image = generated_sheet(latent, prior_sampler(prior), SIZE, per_row=2)
    rows, columns = 2, 2
    left = image.shape[1] - columns * SIZE
    assert image.shape == (rows * SIZE, left + columns * SIZE, 4) and left > 0 and (image[..., 3] == 1).all()
    ink = image[..., :3].min(axis=2) < 0.95  # white background, blue shapes, black labels
    for r in range(rows):
        band = ink[r * SIZE : (r + 1) * SIZE]
        assert band[:, :left].sum() > 10, f"row {r} has no label"
        for c in range(columns):
            tile = band[:, left + c * SIZE : left + (c + 1) * SIZE]
            assert 0.05 < tile.mean() < 0.8, f"tile ({r}, {c}) is {tile.mean():.0%} covered"
            assert not (tile[0].any() or tile[-1].any() or tile[:, 0].any() or tile[:, -1].any()), (
                f"tile ({r}, {c}) is clipped"
            )
            centre = np.argwhere(tile).mean(axis=0)
            assert np.abs(centre - SIZE / 2).max() < SIZE / 8, f"tile ({r}, {c}) is off centre"
