"""The ``render`` and ``mesh`` commands, on the Warp kernels; ``backend.cli`` registers them. Each imports
only its own half (the tracer or marching cubes), so neither pays for the other at start-up.

Failures are one line naming the file and the cause, as in the other commands.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from backend.cli.output import err, fail
from backend.errors import NeuralShapesError
from backend.meshes.extraction import extract_surface
from backend.meshes.writing import WRITABLE_MESH_SUFFIXES, write_mesh_file
from backend.shapes.shape_file import read_shape
from kernels.device import default_device

if TYPE_CHECKING:
    from backend.rendering.renderer import Camera, Scene


def _triple(text: str, option: str) -> np.ndarray:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or not np.isfinite(values).all():
        raise ValueError(f"{option} must be three numbers like 1,-2,0.5, got '{text}'")
    return np.array(values)


def render(
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG file to write (RGBA, transparent background).")],
    shape_paths: Annotated[
        list[Path] | None, typer.Argument(metavar="SHAPE.h5...", help="Neural shape files, united at their own frames.")
    ] = None,
    size: Annotated[
        str | None, typer.Option(help="Image size WIDTHxHEIGHT (default: the scene file's, else 512x512).")
    ] = None,
    scene_path: Annotated[
        Path | None,
        typer.Option("--scene", help="JSON scene: camera, per-object transforms and CSG (docs/kernels.md)."),
    ] = None,
    camera_position: Annotated[
        str | None, typer.Option(help="Camera position x,y,z (world = the shapes' source frame).")
    ] = None,
    look_at: Annotated[
        str | None, typer.Option(help="Point the camera looks at, x,y,z (default: the shapes' centre).")
    ] = None,
    lens: Annotated[float, typer.Option(help="Focal length in mm (36 mm sensor).")] = 50.0,
    occlusion: Annotated[bool, typer.Option("--occlusion/--no-occlusion", help="Ambient occlusion.")] = True,
    shadows: Annotated[
        bool, typer.Option("--shadows/--no-shadows", help="Soft shadows (about twice the time).")
    ] = False,
    passes: Annotated[
        Path | None, typer.Option(help="Also write depth, normals and object ids to this .npz file.")
    ] = None,
    device: Annotated[str | None, typer.Option(help="Warp device (cpu, cuda:0); default: CUDA when present.")] = None,
) -> None:
    """Sphere-trace neural shapes into a PNG; with no camera given the shapes are framed automatically."""
    from backend.rendering.renderer import Scene, SceneObject, parse_size, write_png
    from backend.rendering.renderer import render as render_scene

    try:
        if output.suffix.lower() != ".png":
            raise ValueError(f"{output}: the output must be a .png file")
        if scene_path is not None:
            if shape_paths:
                raise ValueError("give shape files or --scene, not both")
            from backend.rendering.scene import load_scene  # pydantic: only for scene files, not on the fast path

            scene, scene_size = load_scene(scene_path)
        elif shape_paths:
            scene, scene_size = Scene([SceneObject(read_shape(path)) for path in shape_paths]), None
        else:
            raise ValueError("nothing to render: give SHAPE.h5 files or --scene")
        width, height = parse_size(size) if size else scene_size or (512, 512)
        camera = scene.camera
        if camera_position is not None or look_at is not None or scene.camera is None:
            camera = _camera(scene, width, height, camera_position, look_at, lens)
        settings = replace(scene.settings, ambient_occlusion=occlusion, soft_shadows=shadows)
        result = render_scene(Scene(scene.objects, camera, settings), width, height, default_device(device))
        write_png(result.rgba, output)
        if passes is not None:
            np.savez_compressed(passes, depth=result.depth, normal=result.normal, object_id=result.object_id)
    except (NeuralShapesError, ValueError, OSError) as error:
        fail(str(error))
    hits = int((result.object_id >= 0).sum())
    err.print(f"wrote {output} ({width}x{height}, {hits} pixels on shapes)", highlight=False)


def _camera(scene: Scene, width: int, height: int, position: str | None, target: str | None, lens: float) -> Camera:
    """The automatic framing, with the position and / or the look-at point replaced where given."""
    from backend.rendering.renderer import Camera, frame_objects, scene_sphere

    framed = frame_objects(scene.objects, width, height, lens=lens)
    if position is None and target is None:
        return framed
    centre, radius = scene_sphere(scene.objects)
    look = _triple(target, "--look-at") if target else centre
    where = _triple(position, "--camera-position") if position else framed.matrix_world[:3, 3]
    reach = np.linalg.norm(where - centre) + radius
    return Camera.look_at(where, look, lens=lens, clip_start=1e-4 * reach, clip_end=4 * reach)


def mesh(
    shape_path: Annotated[Path, typer.Argument(metavar="SHAPE.h5", help="A neural shape file.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Mesh file to write (.obj, .ply, .stl, .off, .glb).")],
    resolution: Annotated[int, typer.Option(help="Grid points per axis over the shape's cube.")] = 256,
    method: Annotated[
        str, typer.Option(help="sparse (Lipschitz octree, cost follows the surface) or dense.")
    ] = "sparse",
    device: Annotated[str | None, typer.Option(help="Warp device (cpu, cuda:0); default: CUDA when present.")] = None,
) -> None:
    """Extract the zero level set as a triangle mesh with vertex normals, in the source mesh's frame."""
    try:
        if output.suffix.lower() not in WRITABLE_MESH_SUFFIXES:
            raise NeuralShapesError(f"{output}: unknown mesh format '{output.suffix}'")
        if method not in ("sparse", "dense"):
            raise ValueError(f"--method must be sparse or dense, got '{method}'")
        shape = read_shape(shape_path)
        reconstruction = extract_surface(
            shape.architecture,
            shape.weights,
            resolution,
            method=method,
            transform=shape.transform,
            device=default_device(device),
        )
        if len(reconstruction.faces) == 0:
            raise NeuralShapesError(f"{shape_path}: the zero level set is empty at resolution {resolution}")
        write_mesh_file(output, reconstruction.vertices, reconstruction.faces, reconstruction.normals)
    except (NeuralShapesError, ValueError, OSError) as error:
        fail(str(error))
    err.print(
        f"wrote {output} ({len(reconstruction.vertices)} vertices, {len(reconstruction.faces)} faces)", highlight=False
    )
