"""The procedural shape generators of the training collection: one function per class.

Each generator is ``(rng) -> trimesh.Trimesh`` in its own frame (Z up, 0.6 to 3 units across; fitting
normalises the scale) and returns a watertight, outward-facing solid in one piece (volume > 0), built
from manifold3d solids (exact booleans) or, for the smooth classes, a marching-cubes surface.
:mod:`backend.datasets.procedural` turns them into a collection.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import manifold3d
import numpy as np
import numpy.typing as npt
import trimesh
from scipy.interpolate import PchipInterpolator
from skimage.measure import marching_cubes

Manifold = manifold3d.Manifold
MIN_FACES = 1000  # solids of a few boxes are refined (flat splits) so every class has a similar face budget


# --- generators: Z up, 0.6 to 3 units across -------------------------------------------------------


def chair(rng: np.random.Generator) -> trimesh.Trimesh:
    """Seat on four legs (square or round, maybe splayed), a panel or slatted back, maybe arms and stretchers."""
    width, depth = rng.uniform(0.8, 1.2, size=2)
    seat_height, seat_thickness = rng.uniform(0.7, 1.0), rng.uniform(0.05, 0.12)
    seat_middle = seat_height - seat_thickness / 2  # parts end here, well inside the seat
    leg = rng.uniform(0.05, 0.1)
    # Parts are inset from each other by random amounts: exactly touching faces or edges would survive the
    # union as separate sheets that share vertices, which is not a closed mesh once the vertices are merged.
    half_x, half_y = np.array([width, depth]) / 2 - leg / 2 - rng.uniform(0.01, 0.08, size=2)
    parts = [_box((width, depth, seat_thickness), (0, 0, seat_middle))]
    legs = _four_legs(rng, half_x, half_y, seat_middle, leg)
    parts += [each.solid for each in legs]

    back_height, back_thickness = rng.uniform(0.4, 0.9), rng.uniform(0.04, 0.08)
    post = leg * rng.uniform(0.7, 0.95)
    top = seat_thickness / 2 + back_height  # of the back, above its foot in the middle of the seat
    back = [_box((post, back_thickness, top), (x, 0, top / 2)) for x in (-half_x, half_x)]
    style = rng.choice(["panel", "vertical slats", "horizontal slats"])
    if style == "panel":
        panel = back_height * rng.uniform(0.5, 0.95)
        back.append(_box((2 * half_x, back_thickness * 0.9, panel), (0, 0, top - panel / 2)))
    else:
        slats = rng.integers(2, 6)
        rail = rng.uniform(0.05, 0.12)
        back.append(_box((2 * half_x, back_thickness * 0.9, rail), (0, 0, top - rail / 2)))
        for k in range(1, slats + 1):
            if style == "vertical slats":
                x = -half_x + 2 * half_x * k / (slats + 1)
                back.append(_box((post * 0.6, back_thickness * 0.8, top), (x, 0, top / 2)))
            else:
                z = seat_thickness / 2 + (back_height - rail) * k / (slats + 1)
                back.append(_box((2 * half_x, back_thickness * 0.8, rail * 0.6), (0, 0, z)))
    # Lean the back by up to 15 degrees: a negative angle about X tilts its top towards +Y, away from the seat.
    back_solid = _union(back).rotate((-rng.uniform(0, 15), 0, 0))
    parts.append(back_solid.translate((0, half_y, seat_middle)))

    if rng.random() < 0.3:
        arm_height = rng.uniform(0.15, 0.3)
        arm_z = seat_height + arm_height
        for x in (-half_x, half_x):
            parts.append(_box((post, post, arm_z - seat_middle), (x, -half_y, (arm_z + seat_middle) / 2)))
            parts.append(_box((leg * 1.2, 2 * half_y, leg * 0.8), (x, 0, arm_z)))
    if rng.random() < 0.4:
        parts += _stretchers(legs, leg * 0.6, rng.uniform(0.15, 0.35))
    return _to_mesh(_union(parts))


def table(rng: np.random.Generator) -> trimesh.Trimesh:
    """Round or rectangular top on four legs or a pedestal, maybe with an apron and a lower shelf."""
    height, top_thickness = rng.uniform(0.6, 1.0), rng.uniform(0.04, 0.1)
    top_middle = height - top_thickness / 2  # parts end here, well inside the top (see chair)
    if rng.random() < 0.35:
        radius = rng.uniform(0.5, 0.8)
        parts = [Manifold.cylinder(top_thickness, radius, radius, 64, center=True).translate((0, 0, top_middle))]
        if rng.random() < 0.6:  # pedestal: a column on a disc or on feet
            column = rng.uniform(0.04, 0.1)
            parts.append(_rod((0, 0, 0.01), (0, 0, top_middle), column * rng.uniform(1, 1.6), 32, column))
            if rng.random() < 0.5:
                base = radius * rng.uniform(0.4, 0.7)
                parts.append(Manifold.cylinder(rng.uniform(0.03, 0.06), base, base * 0.8, 48))
            else:
                feet = rng.integers(3, 6)
                reach = radius * rng.uniform(0.5, 0.8)
                for angle in np.arange(feet) * 2 * np.pi / feet:
                    end = (reach * np.cos(angle), reach * np.sin(angle), 0.02)
                    parts.append(_rod((0, 0, 0.15), end, column * 0.5, 16))
            return _to_mesh(_union(parts))
        half_x = half_y = radius * rng.uniform(0.4, 0.65)
    else:
        width, depth = rng.uniform(1.0, 2.0), rng.uniform(0.6, 1.1)
        parts = [_box((width, depth, top_thickness), (0, 0, top_middle))]
        half_x, half_y = width / 2 - rng.uniform(0.05, 0.2), depth / 2 - rng.uniform(0.05, 0.2)
    leg = rng.uniform(0.04, 0.1)
    legs = _four_legs(rng, half_x, half_y, top_middle, leg)
    parts += [each.solid for each in legs]
    under = height - top_thickness
    if rng.random() < 0.5:  # apron: boards joining the legs, their tops inside the table top
        apron = rng.uniform(0.05, 0.12)
        parts += _stretchers(legs, leg * 0.5, under - apron / 2 + top_thickness / 4, thickness_z=apron)
    if rng.random() < 0.3:  # lower shelf, out to the legs' axes (further out than half_x, half_y when splayed)
        shelf_z = rng.uniform(0.1, 0.3)
        parts.append(_box((*2 * np.abs(legs[0].at(shelf_z)[:2]), 0.03), (0, 0, shelf_z)))
    return _to_mesh(_union(parts))


def lamp(rng: np.random.Generator) -> trimesh.Trimesh:
    """Base, straight stem or jointed desk arm, and a hollow conical shade open at its wide end."""
    base_radius, base_height = rng.uniform(0.2, 0.35), rng.uniform(0.03, 0.08)
    parts = [Manifold.cylinder(base_height, base_radius, base_radius * rng.uniform(0.6, 1), 48)]
    stem = rng.uniform(0.015, 0.035)
    wall = rng.uniform(0.015, 0.03)
    if rng.random() < 0.6:  # table / floor lamp: the stem ends in the shade's closed top
        top = np.array([0, 0, rng.uniform(0.8, 1.6)])
        parts.append(_rod((0, 0, 0), top - (0, 0, wall / 2), stem, 16))
        shade_length = rng.uniform(0.25, 0.5)
        narrow, wide = rng.uniform(0.08, 0.2), rng.uniform(0.2, 0.4)
        parts.append(_shade(top, (0, 0, -1), shade_length, narrow, wide, wall))
        if rng.random() < 0.7:  # a bulb on the stem
            parts.append(Manifold.sphere(narrow * 0.6, 24).translate(top - (0, 0, shade_length * 0.5)))
    else:  # desk lamp: two arm segments with ball joints, the shade at the end pointing forward and down
        lower, upper = rng.uniform(0.4, 0.8, size=2)
        joint = np.array([0, 0, base_height]) + lower * _direction_xz(rng.uniform(-20, 20))
        tip = joint + upper * _direction_xz(rng.uniform(50, 110))
        parts += [_rod((0, 0, 0), joint, stem, 16), _rod(joint, tip, stem, 16)]
        parts += [Manifold.sphere(stem * 2, 16).translate(p) for p in (joint, tip)]
        shade_length = rng.uniform(0.15, 0.3)
        parts.append(
            _shade(
                tip,
                _direction_xz(rng.uniform(120, 170)),
                shade_length,
                rng.uniform(0.04, 0.08),
                rng.uniform(0.1, 0.2),
                wall,
            )
        )
    return _to_mesh(_union(parts))


def vase(rng: np.random.Generator) -> trimesh.Trimesh:
    """A surface of revolution of a random smooth profile: hollow, open at the top, with a floor."""
    height = rng.uniform(0.8, 1.6)
    controls = rng.integers(4, 7)
    radii = rng.uniform(0.12, 0.5, size=controls)
    z = np.linspace(0, height, 48)
    profile = PchipInterpolator(np.linspace(0, height, controls), radii)(z)  # pchip: no overshoot below 0.12
    return _to_mesh(_vessel(z, profile, rng.uniform(0.02, 0.05), rng.uniform(0.03, 0.08), int(rng.integers(48, 80))))


def mug(rng: np.random.Generator) -> trimesh.Trimesh:
    """A revolved, slightly tapered or bulged cup with a cavity, and a round or square handle."""
    height, radius = rng.uniform(0.6, 1.1), rng.uniform(0.3, 0.5)
    z = np.linspace(0, height, 24)
    t = z / height
    profile = radius * (1 + rng.uniform(-0.15, 0.15) * t + rng.uniform(-0.1, 0.15) * np.sin(np.pi * t))
    segments = int(rng.integers(48, 80))
    body = _vessel(z, profile, rng.uniform(0.03, 0.06), rng.uniform(0.04, 0.08), segments)
    # The handle: a ring in the XZ plane, stretched vertically, with the part inside the body cut away.
    tube = rng.uniform(0.03, 0.07)
    if rng.random() < 0.6:
        section = manifold3d.CrossSection.circle(tube, 16)
    else:
        section = manifold3d.CrossSection.square((tube * 2, tube * 2), center=True)
    ring_radius = rng.uniform(0.15, 0.3)
    handle = Manifold.revolve(section.translate((ring_radius, 0)), 48).rotate((90, 0, 0))
    handle = handle.scale((1, 1, min(rng.uniform(1, 1.6), 0.4 * height / (ring_radius + tube))))  # stays on the body
    handle = handle.translate((np.interp(0.5 * height, z, profile), 0, 0.5 * height))
    return _to_mesh(body + (handle - _solid_of_revolution(z, profile - 0.01, segments)))


def airplane(rng: np.random.Generator) -> trimesh.Trimesh:
    """Revolved fuselage along X, swept tapered wings, tailplane and fin, maybe two or four engines."""
    length = rng.uniform(1.5, 2.5)
    radius = length * rng.uniform(0.035, 0.07)
    s = np.linspace(0, length, 40)
    nose, tail = length * rng.uniform(0.08, 0.18), length * rng.uniform(0.2, 0.35)
    profile = radius * np.minimum.reduce(
        [
            np.ones_like(s),
            np.sqrt(np.clip(s / nose, 0, 1)),
            0.2 + 0.8 * np.clip((length - s) / tail, 0, 1),
        ]
    )
    # Revolve about Z, then turn Z into X (a +90 degree turn about Y), nose at x = 0.
    fuselage = _solid_of_revolution(s, profile, 32).rotate((0, 90, 0))
    span = length * rng.uniform(0.8, 1.3)
    root = length * rng.uniform(0.15, 0.25)
    wing_x = length * rng.uniform(0.3, 0.45)
    wing_z = radius * rng.uniform(-0.6, 0.6)
    sweep = rng.uniform(0.0, 0.5) * span / 2  # of the leading edge, tip against root
    wing = _wing(span, root, root * rng.uniform(0.25, 0.6), sweep, root * rng.uniform(0.06, 0.12))
    parts = [fuselage, wing.translate((wing_x, 0, wing_z))]
    tail_root = root * rng.uniform(0.4, 0.6)
    # Tailplane and fin start on the fuselage's axis, so they join it however thin the tail gets.
    tail_x = length - tail_root * 1.3
    parts.append(
        _wing(span * rng.uniform(0.3, 0.45), tail_root, tail_root * 0.5, tail_root * 0.6, tail_root * 0.1).translate(
            (tail_x, 0, 0)
        )
    )
    fin_height = radius * rng.uniform(2.5, 4.5)
    fin = [(0, 0), (tail_root * 1.2, 0), (tail_root * 1.2, fin_height), (tail_root * 0.6, fin_height)]
    parts.append(_upright_plate(fin, tail_root * 0.1).translate((tail_x, 0, 0)))
    if rng.random() < 0.6:
        engine_radius = radius * rng.uniform(0.35, 0.6)
        engine_length = root * rng.uniform(0.6, 1.0)
        offsets = [0.3] if rng.random() < 0.6 else [0.25, 0.55]
        for y in (sign * f * span / 2 for f in offsets for sign in (-1, 1)):
            x = wing_x + sweep * abs(y) / (span / 2) - engine_length * 0.4  # sticking out of the leading edge
            centre = np.array([x, y, wing_z - engine_radius * 1.3])
            parts.append(_rod(centre, centre + (engine_length, 0, 0), engine_radius, 24))
            parts.append(
                _box(
                    (engine_length * 0.5, radius * 0.1, engine_radius * 1.4),
                    centre + (engine_length * 0.5, 0, engine_radius * 0.8),
                )
            )
    return _to_mesh(_union(parts))


def car(rng: np.random.Generator) -> trimesh.Trimesh:
    """Extruded side profile (sedan, hatchback, pickup-like cabins), a narrower cabin, four wheels in arches."""
    length, width = rng.uniform(1.6, 2.4), rng.uniform(0.7, 1.0)
    wheel, clearance = rng.uniform(0.14, 0.22), rng.uniform(0.06, 0.12)
    body_height, cabin_height = rng.uniform(0.25, 0.4), rng.uniform(0.2, 0.35)
    top = clearance + body_height
    nose = length * rng.uniform(0.03, 0.1)
    rear = top - rng.uniform(0, 0.08)
    lower = [(0, clearance), (length, clearance), (length, top - nose * 0.7), (length - nose, top), (0, rear)]
    windscreen = length * rng.uniform(0.55, 0.72)
    roof_front = windscreen - length * rng.uniform(0.08, 0.2)
    roof_back = length * rng.uniform(0.12, 0.3)
    rear_base = max(0.0, roof_back - length * rng.uniform(0.0, 0.15))
    roof = top + cabin_height
    cabin = [(rear_base, top - 0.1), (windscreen, top - 0.1), (roof_front, roof), (roof_back, roof)]
    parts = [_upright_plate(lower, width), _upright_plate(cabin, width * rng.uniform(0.8, 0.95))]
    body = _union(parts)
    tyre = rng.uniform(0.1, 0.18)
    axles = (length * rng.uniform(0.15, 0.22), length * rng.uniform(0.75, 0.85))
    arches, wheels = [], []
    for x in axles:
        side = width / 2 - tyre / 2 + 0.01
        # The wheels sit in their arches without touching the body; the axle joins them to it.
        wheels.append(_rod((x, -side, wheel), (x, side, wheel), wheel * 0.2, 16))
        for y in (-side, side):
            centre = np.array([x, y, wheel])
            wheels.append(_rod(centre - (0, tyre / 2, 0), centre + (0, tyre / 2, 0), wheel, 32))
            arches.append(_rod(centre - (0, tyre, 0), centre + (0, tyre, 0), wheel * 1.12, 32))
    return _to_mesh((body - _union(arches)) + _union(wheels))


def rocket(rng: np.random.Generator) -> trimesh.Trimesh:
    """Revolved body with a pointed nose, a nozzle, three or four fins, maybe side boosters."""
    radius, body = rng.uniform(0.08, 0.18), rng.uniform(0.8, 1.6)
    parts = [_rocket_body(rng, radius, body)]
    nozzle = radius * rng.uniform(0.5, 0.9)
    parts.append(_rod((0, 0, 0.01), (0, 0, -radius * rng.uniform(0.6, 1.2)), nozzle * 0.6, 32, nozzle))
    fins = int(rng.integers(3, 5))
    span, root = radius * rng.uniform(1.0, 2.5), body * rng.uniform(0.15, 0.35)
    tip = root * rng.uniform(0.2, 0.8)
    sweep = rng.uniform(0, root - tip)
    outline = [(radius * 0.8, 0), (radius + span, sweep), (radius + span, sweep + tip), (radius * 0.8, root)]
    fin = _upright_plate(outline, radius * 0.12)
    parts += [fin.rotate((0, 0, k * 360 / fins)) for k in range(fins)]
    if rng.random() < 0.3:
        booster = radius * rng.uniform(0.3, 0.5)
        side = _rocket_body(rng, booster, body * rng.uniform(0.4, 0.7))
        count = int(rng.integers(2, 5))
        side = side.translate((radius + booster * 0.8, 0, 0))
        parts += [side.rotate((0, 0, 45 + k * 360 / count)) for k in range(count)]
    return _to_mesh(_union(parts))


def blob(rng: np.random.Generator) -> trimesh.Trimesh:
    """Metaballs: the 0.5 level set of a sum of three to eight anisotropic Gaussians (smoothly united ellipsoids)."""
    balls = rng.integers(3, 9)
    axes = rng.uniform(0.15, 0.35, size=(balls, 3))
    rotations = [trimesh.transformations.random_rotation_matrix(rand=rng.random(3))[:3, :3] for _ in range(balls)]
    centres = np.zeros((balls, 3))
    for k in range(1, balls):
        # Each ball within 2.2 x the smaller of its and an earlier ball's shortest axes: the field stays above
        # the level between them (2 exp(-1.1^2) > 0.5), so the blob is one piece.
        j = rng.integers(k)
        step = rng.normal(size=3)
        reach = rng.uniform(0.8, 1.1) * 2 * min(axes[j].min(), axes[k].min())
        centres[k] = centres[j] + step / np.linalg.norm(step) * reach
    # 56 samples per axis over the centres' box plus a margin where every ball's field is below 1e-3.
    grid = np.linspace(centres.min(axis=0) - 0.95, centres.max(axis=0) + 0.95, 56).T  # (3, 56)
    points = np.stack(np.meshgrid(*grid, indexing="ij"), axis=-1)
    field = np.zeros(points.shape[:3])
    for centre, axis, rotation in zip(centres, axes, rotations):
        local = (points - centre) @ rotation / axis
        field += np.exp(-np.einsum("...i,...i", local, local))
    # Zero padding closes any surface that reaches the grid's edge, so the result is always watertight.
    spacing = tuple(grid[:, 1] - grid[:, 0])
    vertices, faces, _, _ = marching_cubes(np.pad(field, 1), 0.5, spacing=spacing, allow_degenerate=False)
    return _outward(trimesh.Trimesh(vertices, faces))


def csg(rng: np.random.Generator) -> trimesh.Trimesh:
    """Random booleans (unions, differences, intersections) of boxes, cylinders and spheres; one piece."""
    solid = _random_primitive(rng, scale=1.0)
    for _ in range(rng.integers(2, 6)):
        other = _random_primitive(rng, scale=0.7)
        operation = rng.choice(["union", "difference", "intersection"], p=[0.45, 0.4, 0.15])
        candidate = {"union": solid + other, "difference": solid - other, "intersection": solid ^ other}[operation]
        if candidate.volume() > 0.3 * solid.volume():  # skip operations that leave a sliver or nothing
            solid = candidate
    if rng.random() < 0.4:  # mirror symmetry, as designed objects have
        solid = solid + solid.mirror((1, 0, 0))
    # Differences can cut a shape apart: the largest piece stays, as one body is what the fitting
    # pipeline counts as clean (exact pseudo-normal signs instead of the slower winding number).
    return _to_mesh(max(solid.decompose(), key=lambda piece: piece.volume()))


def organic(rng: np.random.Generator) -> trimesh.Trimesh:
    """A sphere displaced along its normals by a sum of random low-frequency sinusoids, then stretched."""
    sphere = trimesh.creation.icosphere(subdivisions=int(rng.integers(4, 6)))
    directions = sphere.vertices  # unit vectors
    waves = rng.integers(3, 9)
    amplitudes = rng.dirichlet(np.ones(waves)) * rng.uniform(0.15, 0.45)  # total < 0.45: radius stays > 0.55
    frequencies, phases = rng.uniform(1.5, 4.0, size=waves), rng.uniform(0, 2 * np.pi, size=waves)
    normals = rng.normal(size=(waves, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    radius = 1 + (amplitudes * np.sin(frequencies * (directions @ normals.T) + phases)).sum(axis=1)
    # Star-shaped around the origin with a positive radius: still closed and outward-facing.
    return trimesh.Trimesh(directions * radius[:, None] * rng.uniform(0.6, 1.2, size=3), sphere.faces)


GENERATORS: dict[str, Callable[[np.random.Generator], trimesh.Trimesh]] = {  # class name -> generator
    "chair": chair,
    "table": table,
    "lamp": lamp,
    "vase": vase,
    "mug": mug,
    "airplane": airplane,
    "car": car,
    "rocket": rocket,
    "blob": blob,
    "csg": csg,
    "organic": organic,
}


# --- parts shared by the generators ------------------------------------------------------------------


@dataclass(frozen=True)
class _Leg:
    solid: Manifold
    foot: np.ndarray  # (3,) point on the floor
    top: np.ndarray  # (3,) upper end, under the seat or top

    def at(self, height: float) -> np.ndarray:
        """(3,) point of the leg's axis at ``height``."""
        return self.foot + (self.top - self.foot) * height / self.top[2]


def _four_legs(rng: np.random.Generator, half_x: float, half_y: float, top: float, thickness: float) -> list[_Leg]:
    """Four legs from the floor up to height ``top`` at (±half_x, ±half_y): square or round, maybe splayed."""
    splay = rng.uniform(0, 0.1) if rng.random() < 0.4 else 0.0
    sides, radius = (4, thickness / math.sqrt(2)) if rng.random() < 0.5 else (16, thickness / 2)  # square or round
    legs = []
    for sx, sy in ((-1, -1), (-1, 1), (1, 1), (1, -1)):  # around the rectangle, so neighbours share a side
        foot = np.array([sx * half_x * (1 + splay), sy * half_y * (1 + splay), 0])
        upper = np.array([sx * half_x, sy * half_y, top])
        legs.append(_Leg(_rod(foot, upper, radius, sides), foot, upper))
    return legs


def _stretchers(legs: list[_Leg], thickness: float, height: float, thickness_z: float | None = None) -> list[Manifold]:
    """Bars at ``height`` joining neighbouring legs; ``thickness_z`` makes them boards (an apron)."""
    bars = []
    for a, b in zip(legs, legs[1:] + legs[:1]):
        start, end = a.at(height), b.at(height)
        extent = np.abs(end - start)
        size = np.where(extent > 1e-9, extent, thickness)
        size[2] = thickness if thickness_z is None else thickness_z
        bars.append(_box(size, (start + end) / 2))
    return bars


def _shade(
    closed_end: npt.ArrayLike,
    direction: npt.ArrayLike,
    length: float,
    narrow: float,
    wide: float,
    wall: float,
) -> Manifold:
    """A hollow truncated cone from ``closed_end`` along unit ``direction``, open at its wide end."""
    closed_end, direction = np.asarray(closed_end, dtype=float), np.asarray(direction, dtype=float)
    outer = _rod(closed_end, closed_end + length * direction, narrow, 48, wide)
    # The cavity starts one wall in and runs past the wide end, which opens it.
    flare = (wide - narrow) / length  # radius gained per unit of length
    inner = _rod(
        closed_end + wall * direction,
        closed_end + (length + wall) * direction,
        narrow + flare * wall - wall,
        48,
        wide + flare * wall - wall,
    )
    return outer - inner


def _direction_xz(degrees_from_up: float) -> np.ndarray:
    """Unit vector in the XZ plane, ``degrees_from_up`` from +Z towards +X."""
    angle = math.radians(degrees_from_up)
    return np.array([math.sin(angle), 0, math.cos(angle)])


def _vessel(z: np.ndarray, radius: np.ndarray, wall: float, floor: float, segments: int) -> Manifold:
    """A hollow solid of revolution, open at the top: outer radius ``radius`` at heights ``z`` (both (n,))."""
    top = z[-1]
    inner_z = np.concatenate([[floor], z[z > floor], [top + 1]])  # the cavity pokes out of the top
    inner_r = np.interp(inner_z, z, radius) - wall
    return _solid_of_revolution(z, radius, segments) - _solid_of_revolution(inner_z, inner_r, segments)


def _solid_of_revolution(z: np.ndarray, radius: np.ndarray, segments: int) -> Manifold:
    """The solid swept by the region between the Z axis and radius(z): z (n,) increasing, radius (n,) >= 0."""
    # Counter-clockwise in the (radius, z) plane: out along the bottom, up the profile, back along the top.
    # An end already on the axis (a pointed nose) gets no second point there: the repeat leaves a sliver.
    bottom, top = [[0, z[0]]] if radius[0] > 0 else [], [[0, z[-1]]] if radius[-1] > 0 else []
    outline = np.concatenate([np.reshape(bottom, (-1, 2)), np.column_stack([radius, z]), np.reshape(top, (-1, 2))])
    return Manifold.revolve(manifold3d.CrossSection([outline]), segments)


def _rocket_body(rng: np.random.Generator, radius: float, length: float) -> Manifold:
    """A cylinder of ``radius`` from z = 0 to ``length`` with a pointed nose on top."""
    t = np.linspace(0, 1, 16)
    z = np.concatenate([[0.0], length + radius * rng.uniform(2, 5) * t])
    # 1 - t^p: a cone for p = 1, fuller for larger p; the tip stays pointed (a blunt tip leaves slivers in unions).
    return _solid_of_revolution(z, radius * np.concatenate([[1.0], 1 - t ** rng.uniform(1.5, 3)]), 32)


def _wing(span: float, root: float, tip: float, sweep: float, thickness: float) -> Manifold:
    """A tapered, swept wing across Y (span) with its root leading edge at the origin, centred in Z."""
    half = span / 2
    planform = [(sweep, -half), (sweep + tip, -half), (root, 0), (sweep + tip, half), (sweep, half), (0, 0)]
    return Manifold.extrude(manifold3d.CrossSection([np.array(planform)]), thickness).translate((0, 0, -thickness / 2))


def _upright_plate(outline: npt.ArrayLike, thickness: float) -> Manifold:
    """A plate whose (x, z) outline (counter-clockwise) stands in the XZ plane, ``thickness`` across Y, centred."""
    plate = Manifold.extrude(manifold3d.CrossSection([np.asarray(outline, dtype=float)]), thickness)
    # +90 degrees about X takes the outline's y to z (and the extrusion's z to -y).
    return plate.rotate((90, 0, 0)).translate((0, thickness / 2, 0))


def _random_primitive(rng: np.random.Generator, scale: float) -> Manifold:
    """A box, cylinder or sphere of about ``scale`` across, rotated at random, near the origin."""
    kind = rng.integers(3)
    if kind == 0:
        solid = Manifold.cube(rng.uniform(0.3, 1.0, size=3) * scale, center=True)
    elif kind == 1:
        radius = rng.uniform(0.15, 0.5) * scale
        solid = Manifold.cylinder(rng.uniform(0.3, 1.0) * scale, radius, radius, 48, center=True)
    else:
        solid = Manifold.sphere(rng.uniform(0.25, 0.6) * scale, 48)
    return solid.rotate(tuple(rng.uniform(0, 360, size=3))).translate(tuple(rng.normal(scale=0.25 * scale, size=3)))


def _box(size: npt.ArrayLike, centre: npt.ArrayLike) -> Manifold:
    return Manifold.cube(tuple(map(float, size)), center=True).translate(tuple(map(float, centre)))


def _rod(
    start: npt.ArrayLike,
    end: npt.ArrayLike,
    radius: float,
    segments: int,
    end_radius: float | None = None,
) -> Manifold:
    """A cylinder (or cone to ``end_radius``) from point ``start`` to point ``end`` with ``segments`` sides."""
    start, end = np.asarray(start, dtype=float), np.asarray(end, dtype=float)
    axis = end - start
    length = float(np.linalg.norm(axis))
    rod = Manifold.cylinder(length, radius, radius if end_radius is None else end_radius, segments)
    rod = rod.rotate((0, 0, 180 / segments))  # half a side's turn: a 4-sided rod is a square post along X and Y
    rotation = trimesh.geometry.align_vectors((0, 0, 1), axis / length)[:3, :3]
    return rod.transform(np.column_stack([rotation, start]))


def _union(parts: list[Manifold]) -> Manifold:
    return Manifold.batch_boolean(parts, manifold3d.OpType.Add)


def _to_mesh(solid: Manifold) -> trimesh.Trimesh:
    """A manifold3d solid as a trimesh; solids under MIN_FACES faces are refined by flat splits first."""
    if solid.num_tri() < MIN_FACES:
        solid = solid.refine(math.ceil(math.sqrt(MIN_FACES / solid.num_tri())))
    mesh = solid.to_mesh()
    return trimesh.Trimesh(np.asarray(mesh.vert_properties)[:, :3], np.asarray(mesh.tri_verts))


def _outward(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """The closed mesh with its faces turned outwards (positive volume)."""
    if mesh.volume < 0:
        mesh.invert()
    return mesh
