"""The one scene schema: JSON scenes of ``neural-shapes render --scene`` and of ``POST /v1/render``.

A scene is a camera (Blender's ``matrix_world`` or ``position`` + ``look_at``; none = framed
automatically), objects (a shape, Blender's ``matrix_world`` from the shape's source frame to world,
CSG operation with the objects before it, colour) and tracer settings. The pydantic models check the
form (their errors become one line through :func:`backend.errors.validation_summary`);
:func:`build_scene` checks what the form cannot (invertible matrices, a camera given one way) and
turns a scene into :class:`backend.rendering.renderer.Scene`. A shape is a library id in the HTTP API
and a ``.h5`` path relative to the scene file on the command line. Units and frames as in
:mod:`backend.rendering.renderer`. Format: docs/kernels.md and docs/api.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from backend.errors import NeuralShapesError, validation_summary
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
from backend.shapes.shape_file import NeuralShape, read_shape

Vector3 = tuple[float, float, float]
Side = Annotated[int, Field(ge=1, le=MAX_SIDE)]  # pixels


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
    """A shape placed in the world."""

    shape: str = Field(
        description="id of a shape in the library (a .h5 path relative to the scene file for render --scene)"
    )
    matrix_world: list[list[float]] | None = Field(
        None, description="4x4 from the shape's source frame to world; identity when left out"
    )
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


class SceneSpec(_Strict):
    """Camera (None: framed automatically), objects in CSG order and tracer settings."""

    camera: CameraSpec | None = None
    objects: list[ObjectSpec] = Field(min_length=1)
    settings: TraceSettingsSpec = TraceSettingsSpec()


class SceneFile(SceneSpec):
    """A scene file of ``render --scene``: a scene and the image size it is meant for."""

    resolution: tuple[Side, Side] | None = Field(None, description="[width, height] in pixels")


def build_scene(spec: SceneSpec, load_shape: Callable[[str], NeuralShape]) -> Scene:
    """The renderer's scene; ``load_shape(reference)`` reads each shape once. Raises
    :class:`NeuralShapesError` (one line) for anything the renderer refuses."""
    try:
        shapes: dict[str, NeuralShape] = {}
        objects = []
        for i, entry in enumerate(spec.objects):
            if entry.shape not in shapes:
                shapes[entry.shape] = load_shape(entry.shape)
            if entry.operation == "smooth_union" and entry.smooth_radius == 0:
                raise ValueError(f"objects[{i}].smooth_radius must be positive for smooth_union")
            matrix = np.eye(4) if entry.matrix_world is None else np.asarray(entry.matrix_world, dtype=np.float64)
            if abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
                raise ValueError(f"objects[{i}].matrix_world is not invertible")
            objects.append(
                SceneObject(
                    shapes[entry.shape], matrix, OPERATIONS[entry.operation], entry.smooth_radius, tuple(entry.colour)
                )
            )
        settings = replace(DEFAULT_SETTINGS, **spec.settings.model_dump())
        return Scene(objects, _camera(spec.camera), settings)
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


def load_scene(path: Path) -> tuple[Scene, tuple[int, int] | None]:
    """Read a JSON scene file; returns the scene and its ``resolution`` (width, height) if given.

    Shape paths are relative to the file's folder. Any problem raises :class:`NeuralShapesError`
    naming the file and the entry.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise NeuralShapesError(f"{path}: cannot read scene ({error.strerror or error})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise NeuralShapesError(f"{path}: not valid JSON ({error})".splitlines()[0]) from None
    try:
        spec = SceneFile.model_validate(data)
        if spec.resolution is not None:
            check_size(*spec.resolution)
        return build_scene(spec, lambda shape: read_shape((path.parent / shape).resolve())), spec.resolution
    except ValidationError as error:
        raise NeuralShapesError(f"{path}: {validation_summary(error.errors())}") from None
    except (NeuralShapesError, ValueError) as error:
        raise NeuralShapesError(f"{path}: {error}".splitlines()[0]) from None
