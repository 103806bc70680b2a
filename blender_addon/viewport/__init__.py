"""The neural viewport: a render engine that sphere-traces the neural objects from the 3D viewport's own view."""


def register() -> None:
    from . import engine  # bpy only inside Blender: camera.py stays importable without it

    engine.register()


def unregister() -> None:
    from . import engine

    engine.unregister()
