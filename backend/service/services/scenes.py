"""Render requests: the JSON scene of ``POST /v1/render`` and its translation to :mod:`backend.rendering.renderer`.

The one place that knows the renderer's API (it is young and may move): a camera (Blender's
``matrix_world`` or ``position`` + ``look_at``; none = framed automatically), objects (a library
shape id, Blender's ``matrix_world`` from the shape's source frame to world, CSG operation with the
objects before it, colour) and tracer settings. Units and frames as in ``backend.rendering.renderer``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from backend.errors import NeuralShapesError
from backend.rendering.renderer import (
    DEFAULT_COLOUR,
    DEFAULT_SETTINGS,
    MAX_SIDE,
    OPERATIONS,
    Camera,
    Scene,
    SceneObject,
    check_size,
)
from backend.shapes.shape_file import NeuralShape

MAX_OBJECTS = 256
# width x height x max_steps x objects: the sphere-tracing steps of the worst case, each evaluating
# every object (the default 160 steps allow 103 objects in a 1920x1080 frame, 25 in a 3840x2160 one).
MAX_RENDER_COST = 2**35
Vector3 = tuple[float, float, float]


def _matrix4(value: list[list[float]] | None) -> list[list[float]] | None:
    if value is not None and (len(value) != 4 or any(len(row) != 4 for row in value)):
        raise ValueError("must be 4 rows of 4 numbers (Blender's matrix_world, row-major)")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class CameraSpec(_Strict):
    """A Blender camera; give ``matrix_world`` or both ``position`` and ``look_at``."""

    matrix_world: list[list[float]] | None = None
    position: Vector3 | None = None
    look_at: Vector3 | None = None
    type: Literal["PERSP", "ORTHO"] = "PERSP"
    lens: float = Field(50.0, gt=0)
    sensor_width: float = Field(36.0, gt=0)
    sensor_height: float = Field(24.0, gt=0)
    sensor_fit: Literal["AUTO", "HORIZONTAL", "VERTICAL"] = "AUTO"
    ortho_scale: float = Field(7.3142, gt=0)
    clip_start: float = Field(0.1, ge=0)
    clip_end: float = Field(100.0, gt=0)

    _check_matrix = field_validator("matrix_world")(_matrix4)


class ObjectSpec(_Strict):
    """A library shape placed in the world."""

    shape: str = Field(description="id of a shape in the library")
    matrix_world: list[list[float]] | None = Field(None, description="4x4 from the shape's source frame to world; identity when left out")
    operation: Literal["union", "intersection", "difference", "smooth_union"] = "union"
    smooth_radius: float = Field(0.0, ge=0, description="world units, for smooth_union")
    colour: Vector3 = DEFAULT_COLOUR

    _check_matrix = field_validator("matrix_world")(_matrix4)


class TraceSettingsSpec(_Strict):
    light_direction: Vector3 = DEFAULT_SETTINGS.light_direction
    ambient: float = Field(DEFAULT_SETTINGS.ambient, ge=0, le=1)
    ambient_occlusion: bool = DEFAULT_SETTINGS.ambient_occlusion
    soft_shadows: bool = DEFAULT_SETTINGS.soft_shadows
    max_steps: int = Field(DEFAULT_SETTINGS.max_steps, ge=1, le=10_000)
    step_safety: float = Field(DEFAULT_SETTINGS.step_safety, gt=0, le=1)


class RenderRequest(_Strict):
    """``format``: png (8-bit sRGB RGBA), rgba (float32 linear RGBA, top row first) or npz (every pass).

    Bounded cost: width x height x settings.max_steps x len(objects) <= 34,359,738,368 (MAX_RENDER_COST; else 422).
    """

    width: int = Field(512, ge=1, le=MAX_SIDE)
    height: int = Field(512, ge=1, le=MAX_SIDE)
    camera: CameraSpec | None = None
    objects: list[ObjectSpec] = Field(min_length=1, max_length=MAX_OBJECTS)
    settings: TraceSettingsSpec = TraceSettingsSpec()
    format: Literal["png", "rgba", "npz"] = "png"

    @model_validator(mode="after")
    def _bounded_cost(self) -> RenderRequest:
        cost = self.width * self.height * self.settings.max_steps * len(self.objects)
        if cost > MAX_RENDER_COST:
            raise ValueError(
                f"width x height x settings.max_steps x objects = {cost:,} is over the limit of {MAX_RENDER_COST:,}: "
                "render fewer pixels, steps or objects"
            )
        return self


def build_scene(request: RenderRequest, load_shape: Callable[[str], NeuralShape]) -> Scene:
    """The renderer's scene for a request; ``load_shape(id)`` reads library shapes (each once).
    Raises :class:`NeuralShapesError` for anything the renderer refuses."""
    try:
        check_size(request.width, request.height)
        shapes: dict[str, NeuralShape] = {}
        objects = []
        for i, spec in enumerate(request.objects):
            if spec.shape not in shapes:
                shapes[spec.shape] = load_shape(spec.shape)
            if spec.operation == "smooth_union" and spec.smooth_radius == 0:
                raise ValueError(f"objects[{i}].smooth_radius must be positive for smooth_union")
            matrix = np.eye(4) if spec.matrix_world is None else np.asarray(spec.matrix_world, dtype=np.float64)
            if abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
                raise ValueError(f"objects[{i}].matrix_world is not invertible")
            objects.append(SceneObject(shapes[spec.shape], matrix, OPERATIONS[spec.operation], spec.smooth_radius, tuple(spec.colour)))
        settings = replace(DEFAULT_SETTINGS, **request.settings.model_dump())
        return Scene(objects, _camera(request.camera), settings)
    except ValueError as error:
        raise NeuralShapesError(str(error).splitlines()[0]) from None


def _camera(spec: CameraSpec | None) -> Camera | None:
    if spec is None:
        return None
    options = spec.model_dump(exclude={"matrix_world", "position", "look_at"})
    if spec.matrix_world is not None:
        if spec.position is not None or spec.look_at is not None:
            raise ValueError("camera takes either matrix_world or position + look_at, not both")
        return Camera(np.asarray(spec.matrix_world, dtype=np.float64), **options)
    if spec.position is None or spec.look_at is None:
        raise ValueError("camera needs matrix_world, or both position and look_at")
    return Camera.look_at(spec.position, spec.look_at, **options)
