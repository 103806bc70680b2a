"""The add-on's layout holds: ``client/`` (and the other bpy-free modules) import without Blender, and the
client's models read what the service's OpenAPI document says its answers hold. No Blender needed."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import pytest

from blender_addon.client import models
from tests.conftest import ROOT

# Blender's own modules: none may load when the bpy-free parts are imported.
BLENDER_MODULES = ("bpy", "mathutils", "bmesh", "gpu")
BPY_FREE = ("blender_addon", "blender_addon.errors", "blender_addon.batch")

# Each JSON model of client/models.py and the OpenAPI schemas it reads (the first one names every field).
SCHEMAS = {
    models.Health: ("Health",),
    models.Upload: ("UploadPublic",),
    models.Job: ("JobPublic",),
    models.Shape: ("ShapeDetail", "ShapePublic"),  # transform and provenance: only from GET /v1/shapes/{id}
    models.Nf2vecInfo: ("Nf2vecPublic",),
    models.SimilarShape: ("SimilarShape",),
    models.ClassProbability: ("ClassProbability",),
}
NOT_JSON = {models.MeshArrays, models.RenderedImage}  # raw bytes and headers, no schema
WIRE_NAMES = {(models.ClassProbability, "class_name"): "class"}  # a Python keyword on the wire


def _import_without_blender(modules: list[str]) -> subprocess.CompletedProcess:
    """Import ``modules`` in a fresh interpreter where Blender's modules cannot be imported."""
    script = textwrap.dedent(f"""
        import importlib, sys

        class NoBlender:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {BLENDER_MODULES!r}:
                    raise ImportError(f"{{name}} imported outside Blender")
                return None

        sys.meta_path.insert(0, NoBlender())
        for module in {modules!r}:
            importlib.import_module(module)
        loaded = sorted(name for name in sys.modules if name.split(".")[0] in {BLENDER_MODULES!r})
        assert not loaded, loaded
    """)
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def _client_modules() -> list[str]:
    return [
        "blender_addon.client",
        *(
            f"blender_addon.client.{p.stem}"
            for p in sorted((ROOT / "blender_addon" / "client").glob("*.py"))
            if p.stem != "__init__"
        ),
    ]


def test_client_and_bpy_free_modules_never_import_bpy():
    modules = [*_client_modules(), *BPY_FREE]
    assert "blender_addon.client.connection" in modules and "blender_addon.client.models" in modules
    result = _import_without_blender(modules)
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_bpy_check_can_fail():
    """The guard itself: a module that needs bpy is caught."""
    result = _import_without_blender(["blender_addon.registration"])
    assert result.returncode != 0 and "bpy imported outside Blender" in result.stderr, result.stderr[-3000:]


def test_every_package_says_its_job():
    for init in (ROOT / "blender_addon").glob("*/__init__.py"):
        text = init.read_text(encoding="utf-8")
        assert text.startswith('"""') and text.splitlines()[0].endswith('"""'), f"{init}: no one-line docstring"


@pytest.fixture(scope="module")
def openapi(tmp_path_factory) -> dict:
    """The service's OpenAPI document, from the app as the server builds it (no nf2vec model: quick)."""
    from backend.service.api import create_app
    from backend.service.config import ServiceSettings
    from backend.service.core import open_service

    root = tmp_path_factory.mktemp("openapi")
    settings = ServiceSettings(data_dir=root / "data", nf2vec_model=str(root / "no-model"))
    service = open_service(settings)
    try:
        return create_app(settings, service=service).openapi()
    finally:
        service.close()


def test_every_json_model_has_its_schema():
    defined = {cls for cls in vars(models).values() if isinstance(cls, type) and dataclasses.is_dataclass(cls)}
    assert defined == set(SCHEMAS) | NOT_JSON, "a new model in client/models.py: add it to SCHEMAS (or NOT_JSON)"


@pytest.mark.parametrize("model", list(SCHEMAS), ids=lambda cls: cls.__name__)
def test_client_models_match_the_api_schemas(openapi, model):
    schemas = openapi["components"]["schemas"]
    fields = {WIRE_NAMES.get((model, f.name), f.name): f for f in dataclasses.fields(model)}
    full, *others = (schemas[name] for name in SCHEMAS[model])
    assert set(fields) == set(full["properties"]), f"{model.__name__} vs {SCHEMAS[model][0]}"
    required_by_client = {
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    for schema in (full, *others):
        # a field the client cannot do without must be one every answer holds
        assert required_by_client <= set(schema.get("required", ())), (
            model.__name__,
            required_by_client - set(schema.get("required", ())),
        )
        assert set(schema["properties"]) <= set(fields)
