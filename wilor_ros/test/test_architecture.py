"""The layers of docs/architecture.md hold: a module imports only from its own room or the rooms
below it (imports under ``if TYPE_CHECKING:`` are for annotations and are not counted), and every
core room says in one line what it owns."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "wilor_ros"

# lowest first; a room may import from rooms with a lower or equal rank
LAYERS: dict[str, int] = {
    "core.types": 0,
    "core.config": 0,
    "core.files": 1,
    "core.hand": 2,
    "core.image": 3,
    "core.models": 4,
    "core.backends": 5,
    "core.pipeline_config": 6,
    "core.pipeline": 6,
    "core.temporal": 7,
    "ros": 8,
    "offline": 9,
    "tools": 10,
}
MAX_CORE_MODULE_LINES = 400


def room(module: str) -> str:
    """'wilor_ros.core.image.preprocessing' -> 'core.image'; 'wilor_ros.ros.node' -> 'ros'."""
    parts = module.split(".")[1:]
    return ".".join(parts[:2]) if parts[0] == "core" else parts[0]


def runtime_imports(path: Path) -> list[str]:
    """wilor_ros modules imported by ``path``, outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("wilor_ros."):
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("wilor_ros.")]
    return found


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if (len(parts) > 2 and parts[-1] != "__init__") or len(parts) > 3:
            out.append((".".join(parts), path))
    return out


def test_every_import_goes_down_the_layers():
    upward = []
    for module, path in modules():
        own = LAYERS[room(module)]
        for imported in runtime_imports(path):
            if imported.count(".") < 2:  # `from wilor_ros.core import x`: resolved by the room test below
                continue
            if LAYERS[room(imported)] > own:
                upward.append(f"{module} imports {imported}")
    assert not upward, "imports that climb the layers:\n" + "\n".join(upward)


def test_layer_check_catches_an_upward_import(tmp_path):
    """Control: the check sees an upward import (and ignores one kept for annotations)."""
    bad = tmp_path / "bad.py"
    bad.write_text("from typing import TYPE_CHECKING\nfrom wilor_ros.ros.node import X\n")
    assert runtime_imports(bad) == ["wilor_ros.ros.node"]
    typed = tmp_path / "typed.py"
    typed.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from wilor_ros.ros.node import X\n"
    )
    assert runtime_imports(typed) == []


def test_core_rooms_have_a_docstring_and_small_modules():
    for package in sorted(p for p in (PACKAGE / "core").iterdir() if (p / "__init__.py").is_file()):
        doc = importlib.import_module(f"wilor_ros.core.{package.name}").__doc__
        assert doc and doc.strip(), f"core/{package.name}/__init__.py needs a docstring saying what it owns"
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in (PACKAGE / "core").rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_CORE_MODULE_LINES
    }
    assert not long, f"core modules over {MAX_CORE_MODULE_LINES} lines: {long}"
