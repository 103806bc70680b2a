"""Shared fixtures: the bundled samples, analytic meshes, and the installed command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the installed ``neural-shapes`` entry point of this interpreter's environment."""
    exe = Path(sys.executable).with_name("neural-shapes")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def sphere_mesh() -> trimesh.Trimesh:
    """Icosphere of radius 0.5 at the origin (max chord error ~2e-4)."""
    return trimesh.creation.icosphere(subdivisions=5, radius=0.5)


@pytest.fixture(scope="session")
def box_mesh() -> trimesh.Trimesh:
    return trimesh.creation.box(extents=(1.0, 0.6, 0.8))


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
