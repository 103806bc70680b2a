"""Headless batch conversion with Blender:

    blender -b [scene.blend] -P blender_addon/batch.py -- --input DIR --output DIR [--resolution N]
    python blender_addon/batch.py -- --input DIR --output DIR          (with the bpy module)

Converts every mesh file in --input (or, when a .blend is open, every mesh object in it) into
NAME.h5 + NAME.obj (reconstruction) + NAME.png (preview) in --output, adds neural objects to the
open .blend and saves it, prints a summary table and exits non-zero if any item failed. It uses the
service on --data-dir if one runs, else starts `neural-shapes serve` itself (found on PATH, next to
this repository in .venv, or given by --service-command) and stops it afterwards. Timers do not fire
while a script blocks in `blender -b`, so this waits on the job directly.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script: make the add-on package importable

from blender_addon.client.client import Client, ServiceError
from blender_addon.client.connection import default_data_dir, start_service
from blender_addon.errors import LocalError, one_line

MESH_SUFFIXES = (
    ".obj",
    ".ply",
    ".stl",
    ".off",
    ".glb",
)  # what Blender's own importers read (the backend is not importable here)


def parse_args(argv: list[str]) -> argparse.Namespace:
    args = argv[argv.index("--") + 1 :] if "--" in argv else []
    parser = argparse.ArgumentParser(prog="batch.py", description="Convert meshes to neural shapes headlessly.")
    parser.add_argument("--input", type=Path, help="folder of mesh files (not needed with a .blend)")
    parser.add_argument("--output", type=Path, required=True, help="folder for NAME.h5, NAME.obj, NAME.png")
    parser.add_argument(
        "--resolution", type=int, default=128, help="marching cubes grid of reconstructions and proxies"
    )
    parser.add_argument("--target", type=float, default=0.003, help="surface error to stop fitting at")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="the service's data folder (default: the platform's)"
    )
    parser.add_argument(
        "--service-command", default=None, help="command that runs the backend CLI (default: neural-shapes)"
    )
    return parser.parse_args(args)


class Service:
    """A client of the running service, or of one this script starts (and stops in :meth:`close`)."""

    def __init__(self, data_dir: Path, command: str | None):
        self.process = None
        try:
            self.client = Client.from_running_service(data_dir)
            self.client.check_version()
            return
        except ServiceError:
            pass
        self.process, url = start_service(command or "", data_dir)
        self.client = Client.from_data_dir(url, data_dir)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


def write_outputs(client: Client, shape_id: str, name: str, out: Path, resolution: int) -> None:
    (out / f"{name}.h5").write_bytes(client.download_shape(shape_id))
    (out / f"{name}.obj").write_bytes(client.mesh_file(shape_id, resolution=resolution, format="obj"))
    (out / f"{name}.png").write_bytes(client.render([{"shape": shape_id}], width=256, height=256, format="png").data)


def convert_files(client: Client, files: list[Path], args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(item, result, detail) rows; every file is uploaded, the good ones fitted in one job."""
    rows, uploads = [], {}
    for path in files:
        try:
            uploads[client.upload_mesh_file(path).id] = path.stem
        except ServiceError as error:
            rows.append((path.name, "failed", error.detail))
    if uploads:
        job = client.wait(
            client.start_fit(
                list(uploads), settings={"target_surface_error": args.target}, resolution=args.resolution
            ).id
        )
        for failure in job.outputs.get("failed", []):
            rows.append((uploads.get(failure["upload"], failure["upload"]), "failed", failure["error"]))
        if job.state != "succeeded" and not job.outputs.get("failed"):
            rows.extend((name, "failed", job.error or job.state) for name in uploads.values())
        for shape_id in job.outputs.get("shapes", []):
            shape = client.shape(shape_id)
            write_outputs(client, shape_id, shape.name, args.output, args.resolution)
            rows.append((shape.name, "ok", f"surface error {shape.metrics.get('surface_error', float('nan')):.4f}"))
    return rows


def convert_blend(client: Client, args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """Every mesh object of the open .blend becomes a neural object; the .blend is saved."""
    import bpy

    from blender_addon import properties
    from blender_addon.background.tracked_jobs import wait_for_job
    from blender_addon.scene.neural_objects import is_neural
    from blender_addon.scene.shape_store import service_id, shape_info
    from blender_addon.scene.source_meshes import start_conversion

    if not hasattr(bpy.types.Object, "neural_shapes"):  # a script, the add-on not enabled: its properties still
        for cls in properties.classes:
            bpy.utils.register_class(cls)
        properties.attach()
    sources = [o for o in bpy.context.scene.objects if o.type == "MESH" and not is_neural(o)]
    conversion = start_conversion(
        client,
        sources,
        bpy.context.evaluated_depsgraph_get(),
        args.resolution,
        settings={"target_surface_error": args.target},
    )
    wait_for_job(client, conversion, bpy.context.scene.collection)
    rows = []
    for name in conversion.created:
        obj = bpy.data.objects[name]
        write_outputs(client, service_id(obj), name.removesuffix(" (neural)"), args.output, args.resolution)
        rows.append((name, "ok", f"surface error {shape_info(obj)[1].get('surface_error', float('nan')):.4f}"))
    if conversion.state != "succeeded":
        rows.append(("job", "failed", conversion.error))
    bpy.ops.wm.save_mainfile()
    return rows


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    blend = _open_blend()
    if not blend and (args.input is None or not args.input.is_dir()):
        print(f"error: --input must be a folder of meshes (got {args.input}), or open a .blend", file=sys.stderr)
        return 2
    started = time.monotonic()
    service = Service(
        args.data_dir or Path(os.environ.get("NEURAL_SHAPES_DATA_DIR", default_data_dir())), args.service_command
    )
    try:
        if blend:
            rows = convert_blend(service.client, args)
        else:
            files = sorted(p for p in args.input.iterdir() if p.suffix.lower() in MESH_SUFFIXES)
            rows = (
                convert_files(service.client, files, args) if files else [(str(args.input), "failed", "no mesh files")]
            )
    except (LocalError, ServiceError) as error:
        rows = [("batch", "failed", one_line(error))]
    finally:
        service.close()
    width = max(len(r[0]) for r in rows)
    print(f"\n{'item':<{width}}  result  detail")
    for item, result, detail in rows:
        print(f"{item:<{width}}  {result:<6}  {detail}")
    failed = sum(r[1] != "ok" for r in rows)
    print(f"{len(rows) - failed} converted, {failed} failed in {time.monotonic() - started:.1f} s")
    return 1 if failed else 0


def _open_blend() -> str:
    try:
        import bpy
    except ImportError:
        return ""
    return bpy.data.filepath


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    if code:
        sys.exit(code)
