"""kernels/ stands alone: no module of it imports the backend or torch, statically or at import time."""

import ast
import subprocess
import sys
from pathlib import Path

KERNELS = Path(__file__).resolve().parent.parent / "kernels"
FORBIDDEN = ("backend", "torch")


def _imported_roots(path: Path) -> set[str]:
    """Top-level package of every import statement in a file (function-level imports included)."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_kernel_module_imports_backend_or_torch():
    modules = sorted(KERNELS.glob("*.py"))
    assert len(modules) >= 7
    offenders = {path.name: sorted(_imported_roots(path) & set(FORBIDDEN)) for path in modules}
    assert {name: roots for name, roots in offenders.items() if roots} == {}


def test_importing_kernels_loads_neither_backend_nor_torch():
    names = [f"kernels.{path.stem}" for path in sorted(KERNELS.glob("*.py")) if path.stem != "__init__"]
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=KERNELS.parent, capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"
