"""The add-on's properties, grouped: per scene (saved with the .blend: fit settings, resolutions of new
objects), per object (a neural object's shape, resolutions and CSG role) and per window manager (the
panel's lines and lists: run-time state, never saved). Registered once as ``Scene.neural_shapes``,
``Object.neural_shapes`` and ``WindowManager.neural_shapes``."""

from __future__ import annotations

import bpy

OPERATIONS = [
    ("union", "Union", "Add this shape"),
    ("difference", "Subtract", "Carve this shape out of the ones before it"),
    ("intersection", "Intersect", "Keep only what this shape shares with the ones before it"),
    ("smooth_union", "Smooth Union", "Blend into the ones before it with the smooth radius"),
]


class NeuralShapesSceneSettings(bpy.types.PropertyGroup):
    """How the scene's meshes are converted and its neural objects meshed (``scene.neural_shapes``)."""

    target_error: bpy.props.FloatProperty(
        name="Target surface error",
        description="Fitting stops at this mean |SDF| on the surface (normalised units)",
        default=0.003,
        min=0.0005,
        max=0.05,
        precision=4,
    )
    quality: bpy.props.EnumProperty(
        name="Quality",
        items=[
            ("standard", "Standard", "The default net: 32 kB shapes that the nf2vec tools take"),
            (
                "high",
                "High",
                "Shapes the default net cannot hold are fitted again with larger nets (slower, not for nf2vec)",
            ),
        ],
        default="standard",
    )
    open_meshes: bpy.props.EnumProperty(
        name="Open meshes",
        description="How a mesh with large openings (an open car body, a bowl) is read",
        items=[
            ("shell", "Shell", "A thin shell around its faces, open as the mesh is"),
            ("solid", "Solid", "The solid its winding number closes the openings of"),
        ],
        default="shell",
    )
    resolution: bpy.props.IntProperty(
        name="Proxy resolution",
        description="Marching cubes grid of new neural objects' viewport proxies",
        default=128,
        min=16,
        max=1024,
    )
    render_resolution: bpy.props.IntProperty(
        name="Render resolution",
        description="Marching cubes grid new neural objects get in final renders (F12, blender -b -f / -a)",
        default=256,
        min=16,
        max=1024,
    )


class NeuralShapesObjectSettings(bpy.types.PropertyGroup):
    """A neural object's shape, resolutions and part in the CSG of the preview and the neural viewport
    (``object.neural_shapes``)."""

    shape: bpy.props.PointerProperty(
        name="Shape",
        type=bpy.types.Text,
        description="The shared datablock holding this object's neural shape (.h5), once per shape",
    )
    viewport_resolution: bpy.props.IntProperty(
        name="Viewport resolution",
        description="Marching cubes grid of the proxy mesh shown in the viewport (Re-extract applies it)",
        default=128,
        min=16,
        max=1024,
    )
    render_resolution: bpy.props.IntProperty(
        name="Render resolution",
        description="Marching cubes grid of the surface final renders use; the proxy is restored afterwards",
        default=256,
        min=16,
        max=1024,
    )
    operation: bpy.props.EnumProperty(name="CSG", items=OPERATIONS, default="union")
    smooth_radius: bpy.props.FloatProperty(name="Smooth radius", default=0.1, min=0.0, subtype="DISTANCE")


class NeuralSimilarShape(bpy.types.PropertyGroup):
    """A row of Find Similar's list (``name``: the library shape's name)."""

    shape_id: bpy.props.StringProperty(name="Shape id")
    distance: bpy.props.FloatProperty(name="Distance", description="Between the nf2vec codes (latent z or embeddings)")


class NeuralClassProbability(bpy.types.PropertyGroup):
    """A row of Classify's list (``name``: the class)."""

    probability: bpy.props.FloatProperty(name="Probability", subtype="FACTOR", min=0.0, max=1.0)


class NeuralShapesState(bpy.types.PropertyGroup):
    """What the panel shows (``window_manager.neural_shapes``); the string fields are the lines a
    background task writes its outcome to (:func:`..background.workers.start`'s ``line``)."""

    status: bpy.props.StringProperty(name="Service status", default="")
    job: bpy.props.StringProperty(name="Running job", default="")
    stage: bpy.props.StringProperty(name="Stage", default="")
    progress: bpy.props.FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    message: bpy.props.StringProperty(name="Last result", default="")
    nf2vec: bpy.props.StringProperty(name="nf2vec model", default="")
    similar: bpy.props.CollectionProperty(type=NeuralSimilarShape)
    similar_to: bpy.props.StringProperty(name="Similar to", default="")
    classes: bpy.props.CollectionProperty(type=NeuralClassProbability)
    classes_of: bpy.props.StringProperty(name="Classes of", default="")


# Registered in this order: a group before the groups that hold it.
classes = (
    NeuralShapesSceneSettings,
    NeuralShapesObjectSettings,
    NeuralSimilarShape,
    NeuralClassProbability,
    NeuralShapesState,
)


def attach() -> None:
    """Hang the groups on Scene, Object and WindowManager (their classes registered first)."""
    bpy.types.Scene.neural_shapes = bpy.props.PointerProperty(type=NeuralShapesSceneSettings)
    bpy.types.Object.neural_shapes = bpy.props.PointerProperty(type=NeuralShapesObjectSettings)
    bpy.types.WindowManager.neural_shapes = bpy.props.PointerProperty(type=NeuralShapesState)


def detach() -> None:
    del bpy.types.WindowManager.neural_shapes
    del bpy.types.Object.neural_shapes
    del bpy.types.Scene.neural_shapes


def state(context: bpy.types.Context | None = None) -> NeuralShapesState:
    """The panel's state (``context``: default ``bpy.context``)."""
    return (context or bpy.context).window_manager.neural_shapes
