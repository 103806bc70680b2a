"""Run with the bpy module (a subprocess of bench/bench_blender_nf2vec.py): the add-on's nf2vec operators
timed as an artist waits for them, against a real service.

    python nf2vec_operator_times.py ZIP DATA_DIR MESH_A MESH_B RESOLUTION REPEAT
(ZIP: the built add-on; DATA_DIR: the service's data folder; MESH_A, MESH_B: .ply files.) Prints one
JSON line: {"blender", "model", "rounds": [[{"operation", "seconds", "added", "result"}, ...], ...]}.

Each round starts from an empty scene: import the two meshes, Convert them (the first neural object is
A, the second B), then Check nf2vec, Interpolate 1 (embedding space) and 5 (weight space) between A and
B, Generate 1 (seed 0) at the cursor, Complete A, Find Similar to A (k=5) and Classify A. A job
operator's time runs from the call of ``execute`` (the dialog's OK) until its objects are in the scene,
with the add-on's ``background.workers.tick`` called as the UI's timer calls it: first after
``TICK_SECONDS``, then after what each tick returns, so the times include the add-on's polling latency
(its worker polls the job every 0.5 s). Find Similar and Classify run on a worker too and are timed the same way.
A refused request or a job that ends without its objects stops the script (exit code 1).
"""

import json
import sys
import time

import bpy

zip_path, data_dir, mesh_a, mesh_b = sys.argv[1:5]
resolution, repeat = int(sys.argv[5]), int(sys.argv[6])
package = "bl_ext.user_default.neural_shapes"
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
bpy.context.preferences.addons[package].preferences.data_dir = data_dir
workers = sys.modules[f"{package}.background.workers"]


def fail(message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(1)


def press(operator, **options) -> str:
    try:
        return min(operator(**options))
    except RuntimeError as error:  # an ERROR report raises when called from a script
        return f"error: {error}".strip()


def select(*objects, active=None) -> None:
    for obj in bpy.data.objects:
        obj.select_set(obj in objects)
    bpy.context.view_layer.objects.active = active or (objects[-1] if objects else None)


def tick_until_done() -> None:
    """Tick the add-on's tasks as the UI's timer does until none is left."""
    wait = workers.TICK_SECONDS  # the timer's first interval
    while wait is not None:
        time.sleep(wait)
        wait = workers.tick()


def press_until_done(name: str, operator, **options) -> float:
    """Press an operator and tick as the UI's timer does until its run is over; the seconds it took."""
    started = time.perf_counter()
    pressed = press(operator, **options)
    if pressed != "FINISHED":
        fail(f"{name}: {pressed}")
    tick_until_done()
    return time.perf_counter() - started


def timed_job(name: str, operator, expected: int, **options) -> tuple[dict, list]:
    """Press a job operator and tick it as the UI's timer does until the run is over; its new objects."""
    wm = bpy.context.window_manager
    before = set(bpy.data.objects)
    seconds = press_until_done(name, operator, **options)
    made = sorted(set(bpy.data.objects) - before, key=lambda o: o.name)
    if len(made) != expected:
        fail(f"{name}: {len(made)} object(s) added, {expected} expected; last line: {wm.neural_shapes.stage}")
    return {"operation": name, "seconds": seconds, "added": len(made), "result": wm.neural_shapes.stage}, made


def timed_call(name: str, operator, describe, **options) -> dict:
    """Press an operator that lists an answer; ``describe()`` sums up what it listed."""
    seconds = press_until_done(name, operator, **options)
    return {"operation": name, "seconds": seconds, "added": 0, "result": describe()}


def import_meshes() -> list[bpy.types.Object]:
    """The two meshes side by side along x, a gap between them."""
    objects = []
    for path in (mesh_a, mesh_b):
        bpy.ops.wm.ply_import(filepath=path)
        objects.append(bpy.context.active_object)
    gap = max(max(o.dimensions) for o in objects) + 0.5
    objects[0].location, objects[1].location = (-gap / 2, 0.0, 0.0), (gap / 2, 0.0, 0.0)
    return objects


def one_round() -> list[dict]:
    bpy.ops.wm.read_homefile(use_empty=True)
    scene, wm = bpy.context.scene, bpy.context.window_manager
    scene.neural_shapes.resolution = resolution
    meshes = import_meshes()
    select(*meshes)
    rows = []
    row, (a, b) = timed_job("Convert (2 meshes)", bpy.ops.neural.convert_selected, 2)
    rows.append(row)
    rows.append(timed_call("Check nf2vec", bpy.ops.neural.nf2vec_info, lambda: wm.neural_shapes.nf2vec))
    select(a, b, active=b)
    rows.append(
        timed_job("Interpolate 1 (embedding)", bpy.ops.neural.interpolate, 1, count=1, t=0.5, space="embedding")[0]
    )
    select(a, b, active=b)
    rows.append(timed_job("Interpolate 5 (weights)", bpy.ops.neural.interpolate, 5, count=5, space="weights")[0])
    scene.cursor.location = (0.0, 2.0 * max(a.dimensions) + 1.0, 0.0)
    rows.append(timed_job("Generate 1 (seed 0)", bpy.ops.neural.generate, 1, count=1, seed=0)[0])
    select(a)
    rows.append(timed_job("Complete", bpy.ops.neural.complete, 1)[0])
    select(a)
    rows.append(
        timed_call(
            "Find Similar (k=5)", bpy.ops.neural.find_similar, lambda: f"{len(wm.neural_shapes.similar)} listed", k=5
        )
    )
    select(a)
    rows.append(
        timed_call(
            "Classify",
            bpy.ops.neural.classify,
            lambda: ", ".join(f"{c.name} {c.probability:.2f}" for c in list(wm.neural_shapes.classes)[:2]),
        )
    )
    return rows


rounds = [one_round() for _ in range(repeat)]
print(
    json.dumps(
        {"blender": bpy.app.version_string, "model": bpy.context.window_manager.neural_shapes.nf2vec, "rounds": rounds}
    )
)
