"""Neural Shapes for Blender: the add-on package (a Blender 4.2+ extension, or a legacy add-on via ``bl_info``).

bpy is imported only inside :func:`register`, so the bpy-free parts (``client/``, ``connection``) stay
importable from plain Python (tests, scripts).
"""

bl_info = {
    "name": "Neural Shapes",
    "author": "neural-shapes developers",
    "version": (0, 1, 0),
    "blender": (3, 4, 0),
    "location": "3D Viewport > Sidebar > Neural Shapes",
    "description": "Turn meshes into neural SDFs, render and mesh them back (needs the neural-shapes service)",
    "category": "Mesh",
}


def register() -> None:
    from . import registration, viewport

    registration.register()
    viewport.register()  # the Neural Shapes render engine (the neural viewport): its own worker and timer


def unregister() -> None:
    from . import registration, viewport

    registration.unregister()  # first: it breaks off the requests in flight, a viewport frame's too
    viewport.unregister()
