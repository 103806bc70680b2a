"""Operations on z without a refit (backend/nf2vec/ops/latent_ops.py): interpolation with faded residuals (ends
bit-exact), generation from a class prior (non-empty, reproducible, truncation), completion by MAP + fuse
fit (beats the partial's own net on a half-cut toy shape; falls back on nonsense)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import trimesh

from backend.datasets.partials import partial_mesh
from backend.errors import NeuralShapesError
from backend.fitting.batched import fit_shapes
from backend.fitting.pipeline import fitted_shape
from backend.meshes.extraction import extract_mesh
from backend.meshes.loading import bounding_similarity, load_mesh_file, normalise_mesh
from backend.meshes.metrics import reconstruction_quality, surface_samples
from backend.nf2vec.decoding import IDENTITY
from backend.nf2vec.latent import estimate_prior, flat_forward, flatten, unflatten
from backend.nf2vec.ops.interpolation import interpolated_frame
from backend.nf2vec.ops.latent_ops import (
    LatentCompletionSettings,
    _ball_grid,
    _cell_of,
    _detached_parts,
    _fuse_samples,
    _Pose,
    blend_sampler,
    class_probabilities,
    complete_latent,
    generate_latent,
    interpolate_latent,
    prior_sampler,
    surface_points_and_normals,
)
from backend.shapes.network import evaluate_sdf
from tests.nf2vec_toolkit import CLASS_OF, CLASSES, QUICK_FIT
from tests.test_nf2vec_latent import ARCH, FAMILY, toy, trained  # noqa: F401  (module fixtures, reused)

pytestmark = [pytest.mark.usefixtures("single_torch_thread"), pytest.mark.slow]
QUICK_COMPLETE = LatentCompletionSettings(
    steps=150,
    latent_learning_rate=1e-1,
    context_points=1024,
    prior_points=4096,
    fuse=replace(LatentCompletionSettings().fuse, max_steps=200, eval_every=200),
)


@pytest.fixture(scope="module")
def classed(trained):
    """The trained toy latent family with a class prior (round / boxy) over its fitted shapes' latents."""
    end = trained[1]
    names = [name for name in end.names if name in CLASS_OF]
    labels = np.array([CLASSES.index(CLASS_OF[name]) for name in names])
    return replace(end, prior=estimate_prior(end.latents[: len(names)], labels, CLASSES))


def _non_empty(weights) -> bool:
    values = evaluate_sdf(ARCH, weights, _ball_grid(32))
    return values.min() < 0 < values.max()


@pytest.mark.parametrize("fade", ["linear", "quadratic"])
def test_interpolation_ends_are_bit_exact_and_in_betweens_have_a_surface(toy, classed, fade):
    train = toy[3]
    a, b = train[0], train[5]  # sphere, ring
    z_a, z_b = classed.latents[0].numpy(), classed.latents[5].numpy()
    shapes = interpolate_latent(classed, a, z_a, b, z_b, [0.0, 0.25, 0.5, 0.75, 1.0], fade)
    assert flatten(shapes[0].weights).tobytes() == flatten(a.weights).tobytes()
    assert flatten(shapes[-1].weights).tobytes() == flatten(b.weights).tobytes()
    assert all(_non_empty(shape.weights) for shape in shapes[1:-1])
    assert [shape.name for shape in shapes][2] == f"{a.name}-{b.name}-t500"
    assert shapes[2].provenance["fade"] == fade and np.isnan(shapes[2].metrics["chamfer"])
    frame = interpolated_frame(a.transform, b.transform, 0.5)
    assert shapes[2].transform.scale == frame.scale and np.array_equal(shapes[2].transform.centre, frame.centre)
    middle = flatten(shapes[2].weights)
    if fade == "linear":  # a linear decoder: the same as interpolating the weights
        np.testing.assert_allclose(middle, 0.5 * (flatten(a.weights) + flatten(b.weights)), atol=1e-5)
    else:  # a quarter of each residual at t = 1/2
        with torch.no_grad():
            on_subspace = classed.flat(torch.from_numpy(0.5 * (z_a + z_b))[None])[0].numpy()
        residuals = [
            flatten(s.weights) - classed.flat(torch.from_numpy(z)[None])[0].detach().numpy()
            for s, z in ((a, z_a), (b, z_b))
        ]
        np.testing.assert_allclose(middle, on_subspace + 0.25 * (residuals[0] + residuals[1]), atol=1e-5)


def test_generation_is_non_empty_reproducible_and_truncated(classed):
    shapes = generate_latent(classed, prior_sampler(classed.prior), 4, seed=3, class_name="round")
    again = generate_latent(classed, prior_sampler(classed.prior), 4, seed=3, class_name="round")
    other = generate_latent(classed, prior_sampler(classed.prior), 4, seed=4, class_name="round")
    assert all(_non_empty(shape.weights) for shape in shapes)
    assert [flatten(s.weights).tobytes() for s in shapes] == [flatten(s.weights).tobytes() for s in again]
    assert flatten(shapes[0].weights).tobytes() != flatten(other[0].weights).tobytes()
    assert shapes[1].name == "generated-round-3-1" and shapes[1].provenance["class"] == "round"
    with pytest.raises(NeuralShapesError, match="unknown class 'spiky'"):
        generate_latent(classed, prior_sampler(classed.prior), 1, class_name="spiky")

    sampler, mean = prior_sampler(classed.prior), classed.prior.class_mean[0].numpy()
    full, half = (sampler(16, torch.Generator().manual_seed(1), "round", t) for t in (1.0, 0.5))
    np.testing.assert_allclose(half - mean, 0.5 * (full - mean), atol=1e-5)  # truncation scales the spread
    [typical] = generate_latent(classed, sampler, 1, class_name="round", truncation=0.0)
    # The class mean's net moved towards the origin and scaled to fill the bounding sphere, as fitted shapes do:
    # its surface under x -> s (x - c) for a centre c between the origin and the surface's bounding centre.
    decoded = classed.flat(torch.from_numpy(mean)[None])[0].detach().numpy()
    surface = extract_mesh(ARCH, unflatten(ARCH, decoded), 64).vertices
    sphere_centre = bounding_similarity(surface, "class mean").centre
    assert np.linalg.norm(sphere_centre) > 0.02 or abs(np.linalg.norm(surface, axis=1).max() - 0.9) > 0.02
    errors = []
    for share in np.linspace(0, 1, 6):
        moved = surface - share * sphere_centre
        moved *= 0.9 / np.linalg.norm(moved, axis=1).max()
        errors.append(np.abs(evaluate_sdf(ARCH, typical.weights, moved.astype(np.float32))).max())
    assert min(errors) < 0.02  # marching cubes at 64^3 puts vertices within about a third of a cell
    assert abs(np.linalg.norm(extract_mesh(ARCH, typical.weights, 64).vertices, axis=1).max() - 0.9) < 0.02


def test_generation_redraws_latents_with_no_surface(classed):
    # Direction 0 lifts the output bias: z0 = 30 saturates the field positive everywhere (no surface).
    basis = torch.zeros_like(classed.basis)
    basis[0, -1] = 1.0
    latent = replace(classed, theta=classed.flat(classed.latents[:1])[0].detach(), basis=basis)
    draws = []

    def sampler(count, generator, class_name, truncation):
        draws.append(count)
        z = np.zeros((count, latent.k), np.float32)
        z[: count if len(draws) == 1 else 0, 0] = 30.0
        return z

    shapes = generate_latent(latent, sampler, 3, seed=0)
    assert draws == [3, 3] and [s.provenance["draw"] for s in shapes] == ["1", "1", "1"]
    assert all(_non_empty(shape.weights) for shape in shapes)


@pytest.fixture(scope="module")
def half_sphere(toy):
    """The toy sphere (a training shape, class round) cut in half by the plane x = 0 (faces by their centres): the whole mesh, the
    half mesh, and the half's own quickly fitted net, all in the whole's normalised frame."""
    collection = toy[1]
    whole = load_mesh_file(collection / "sphere.ply").trimesh()
    half = partial_mesh(whole, whole.triangles_center[:, 0] > 0)
    mesh = normalise_mesh(half.vertices, half.faces, name="sphere-half", transform=IDENTITY)
    [result] = fit_shapes(FAMILY, [mesh], QUICK_FIT)
    return whole, half, fitted_shape(mesh, result, FAMILY, source_name="sphere-half.ply")


def _chamfer_to(whole: trimesh.Trimesh, shape) -> float:
    """Chamfer of a shape's surface (placed in the whole's frame by its transform) to the whole mesh."""
    points = surface_samples(whole.vertices, whole.faces, 5000)
    return reconstruction_quality(
        whole, points, extract_mesh(ARCH, shape.weights, 64, transform=shape.transform)
    ).chamfer


def test_completion_of_a_half_sphere_beats_its_own_net_and_nonsense_falls_back(classed, half_sphere):
    whole, half, partial = half_sphere
    points, normals = surface_points_and_normals(half, 4096)
    completed, report = complete_latent(
        classed, FAMILY, partial, points, normals, class_name="round", settings=QUICK_COMPLETE
    )
    assert not report.fell_back and report.data_loss < QUICK_COMPLETE.fallback_residual, report
    assert completed.name == "sphere-half-completed" and completed.provenance["fell_back"] == "false"
    partial_chamfer, completed_chamfer = _chamfer_to(whole, partial), _chamfer_to(whole, completed)
    assert completed_chamfer < 0.5 * partial_chamfer, (completed_chamfer, partial_chamfer)

    rng = np.random.default_rng(0)
    noise = rng.uniform(-0.9, 0.9, (4096, 3))
    fallback, report = complete_latent(
        classed, FAMILY, partial, noise, rng.normal(size=(4096, 3)), settings=QUICK_COMPLETE
    )
    assert report.fell_back and fallback.provenance["fell_back"] == "true"
    assert (
        flatten(fallback.weights).tobytes() == flatten(partial.weights).tobytes()
        and fallback.transform is partial.transform
    )


def test_completion_with_candidate_classes_keeps_the_class_that_explains_the_surface(classed, half_sphere):
    whole, half, partial = half_sphere
    points, normals = surface_points_and_normals(half, 4096)
    completed, report = complete_latent(
        classed, FAMILY, partial, points, normals, class_name=["boxy", "round"], settings=QUICK_COMPLETE
    )
    assert completed.provenance["class"] == "round" and not report.fell_back
    assert len(report.start_losses) == QUICK_COMPLETE.kept_starts  # the other starts were pruned
    with pytest.raises(NeuralShapesError, match="unknown class 'teapot'"):
        complete_latent(
            classed, FAMILY, partial, points, normals, class_name=["round", "teapot"], settings=QUICK_COMPLETE
        )


def test_the_fuse_takes_the_partials_own_field_where_agreeing_starts_disagree(classed, half_sphere):
    _, half, partial = half_sphere
    points, normals = surface_points_and_normals(half, 2048)
    context = torch.from_numpy(points)
    round_net, boxy_net = (classed.flat(classed.prior.class_mean[[i]]).detach() for i in (0, 1))
    poses = [_Pose(net, 0.0, np.zeros(3, np.float32), 0.0) for net in (round_net, boxy_net)]
    # the default guard: ensemble_ratio 1.5 (detached pieces kept here: test_detached_pieces_... covers them)
    settings = replace(QUICK_COMPLETE, detached_resolution=0)
    assert settings.ensemble_ratio == 1.5
    data, _ = _fuse_samples(classed, partial, poses, 1.0, np.zeros(3), context, torch.zeros(2048), points, settings)
    candidates = torch.from_numpy(data.points[2048:])
    with torch.no_grad():
        prior, other = (pose.field(candidates, ARCH).numpy() for pose in poses)
    own = np.maximum(
        evaluate_sdf(ARCH, partial.weights, data.points[2048:]), np.linalg.norm(data.points[2048:], axis=1) - 0.95
    )
    agree = np.sign(prior) == np.sign(other)
    assert 0.05 < agree.mean() < 0.999  # the two class means differ somewhere, not everywhere
    np.testing.assert_allclose(data.sdf[2048:][agree], prior[agree], atol=1e-5)
    np.testing.assert_allclose(data.sdf[2048:][~agree], own[~agree], atol=1e-5)
    np.testing.assert_array_equal(data.sdf[:2048], 0.0)  # the observed side as given

    unguarded, _ = _fuse_samples(
        classed,
        partial,
        poses,
        1.0,
        np.zeros(3),
        context,
        torch.zeros(2048),
        points,
        replace(settings, ensemble_ratio=None),
    )
    with torch.no_grad():
        best = poses[0].field(torch.from_numpy(unguarded.points[2048:]), ARCH).numpy()
    np.testing.assert_allclose(unguarded.sdf[2048:], best, atol=1e-5)  # no guard: the best start's prior throughout


def test_detached_pieces_of_the_prior_are_found_and_left_out_of_the_fuse(classed, half_sphere):
    """A piece of the target's inside that touches nothing of the partial's inside is a floater: its cells
    (grown by one) are found; the piece that holds the partial is not."""

    def ball(centre: tuple[float, float, float], radius: float):
        return lambda x: (x - torch.tensor(centre)).norm(dim=1) - radius

    main, floater, seen = ball((0.0, 0.0, 0.0), 0.4), ball((0.7, 0.0, 0.0), 0.12), ball((-0.1, 0.0, 0.0), 0.3)
    target = lambda x: torch.minimum(main(x), floater(x))  # noqa: E731
    detached = _detached_parts(lambda x: (target(x), seen(x)), 32)
    points = torch.tensor([[0.7, 0.0, 0.0], [0.7, 0.1, 0.0], [0.0, 0.0, 0.0], [0.35, 0.0, 0.0], [-0.7, 0.5, 0.0]])
    cells = _cell_of(points, 32)
    assert detached[cells[:, 0], cells[:, 1], cells[:, 2]].tolist() == [True, True, False, False, False]
    # a partial fitted as a shell thinner than a cell (an open scan) still joins the piece round it
    shell = lambda x: seen(x).abs() - 1e-4  # noqa: E731
    detached = _detached_parts(lambda x: (target(x), shell(x)), 32)
    assert detached[cells[:, 0], cells[:, 1], cells[:, 2]].tolist() == [True, True, False, False, False]

    # In the fuse's samples a detached piece takes the partial's field: a start whose field is the partial's
    # plus a far ball (the partial's net is the sphere's half, nowhere near (-0.4, 0, 0)).
    _, half, partial = half_sphere
    points, _ = surface_points_and_normals(half, 2048)

    class _Floater(_Pose):
        def field(self, x_partial, architecture):
            own = flat_forward(ARCH, torch.from_numpy(flatten(partial.weights))[None], x_partial[None])[0]
            return torch.minimum(own, ball((-0.4, 0.0, 0.0), 0.15)(x_partial))

    pose = _Floater(torch.zeros(1), 0.0, np.zeros(3, np.float32), 0.0)
    settings = replace(QUICK_COMPLETE, ensemble_ratio=None, detached_resolution=32, prior_points=16_384)
    data, _ = _fuse_samples(
        classed, partial, [pose], 1.0, np.zeros(3), torch.from_numpy(points), torch.zeros(2048), points, settings
    )
    in_floater = np.linalg.norm(data.points - np.array([-0.4, 0.0, 0.0]), axis=1) < 0.14
    assert in_floater.sum() > 5 and (data.sdf[in_floater] > 0).all()
    kept, _ = _fuse_samples(
        classed,
        partial,
        [pose],
        1.0,
        np.zeros(3),
        torch.from_numpy(points),
        torch.zeros(2048),
        points,
        replace(settings, detached_resolution=0),
    )
    in_floater = np.linalg.norm(kept.points - np.array([-0.4, 0.0, 0.0]), axis=1) < 0.14
    assert (kept.sdf[in_floater] < 0).all()


def test_class_probabilities_rank_by_the_nearest_class_mean(classed):
    prior = classed.prior
    z = np.stack([prior.class_mean[1].numpy(), 0.9 * prior.class_mean[0].numpy() + 0.1 * prior.class_mean[1].numpy()])
    probabilities = class_probabilities(prior, z)
    assert probabilities.shape == (2, len(CLASSES)) and np.allclose(probabilities.sum(1), 1)
    assert probabilities.argmax(1).tolist() == [1, 0]


def test_blends_lie_between_two_training_latents_of_the_class_with_its_spread(classed):
    latent = replace(
        classed,
        labels=torch.tensor([CLASSES.index(CLASS_OF[name]) for name in classed.names[: len(CLASS_OF)]]),
        latents=classed.latents[: len(CLASS_OF)],
        names=classed.names[: len(CLASS_OF)],
    )
    sample = blend_sampler(latent, low=0.25)
    z = torch.from_numpy(sample(2000, torch.Generator().manual_seed(0), "round", 1.0))
    mean = latent.prior.class_mean[CLASSES.index("round")]
    members = latent.latents[latent.labels == CLASSES.index("round")]
    # Each is m + (a (z_i - m) + b (z_j - m)) with a = (1 - l) / r, b = l / r, r = sqrt((1 - l)^2 + l^2), l in
    # [0.25, 0.75]: in the plane of two members' offsets, with a^2 + b^2 = 1 (a plain blend has (1 - l)^2 + l^2,
    # half of it mid-way: blends would crowd round m), the blend weights in range.
    best = torch.full((len(z),), np.inf)
    for i in range(len(members)):
        for j in range(len(members)):
            offsets = torch.stack([members[i] - mean, members[j] - mean], 1).double()  # (k, 2)
            a_b = torch.linalg.lstsq(offsets, (z - mean).double().T).solution  # (2, n)
            residual = ((offsets @ a_b).T - (z - mean)).norm(dim=1)
            share = a_b[1] / a_b.sum(0)
            fits = (residual < 1e-3) & ((a_b.pow(2).sum(0) - 1).abs() < 1e-3) & (share > 0.249) & (share < 0.751)
            best = torch.where(fits, torch.zeros_like(best), best)
    assert (best == 0).all()
    assert torch.equal(
        torch.from_numpy(sample(3, torch.Generator().manual_seed(0), "round", 0.0)),
        mean.expand(3, -1),
    )
    with pytest.raises(NeuralShapesError, match="training latents and their classes"):
        blend_sampler(replace(latent, labels=None))
