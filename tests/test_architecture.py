"""The layer table of DESIGN.md, enforced: a module imports only from its own layer or layers above it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# (path prefix relative to ROOT, layer); the longest matching prefix wins.
LAYERS = [
    ("vimscope/__init__.py", 0),
    ("vimscope/_lazy.py", 0),
    ("vimscope/__main__.py", 4),
    ("vimscope/types.py", 0),
    ("vimscope/config.py", 0),
    ("vimscope/errors.py", 0),
    ("vimscope/demo.py", 0),
    ("kernels/", 1),
    ("vimscope/io/", 1),
    ("vimscope/tissue/", 1),
    ("vimscope/tiling/plan.py", 1),
    ("vimscope/tiling/__init__.py", 1),
    ("vimscope/stitch/", 1),
    ("vimscope/writers/", 1),
    ("vimscope/postprocess/", 1),
    ("vimscope/models/", 2),
    ("vimscope/tiling/loader.py", 2),
    ("vimscope/tiling/jpegloader.py", 2),
    ("vimscope/stitch/device.py", 2),
    ("vimscope/pipeline/", 3),
    ("vimscope/train/", 3),
    ("vimscope/cli/", 4),
    ("vimscope/runners/", 4),
    ("plugins/napari/", 4),
]

# module prefix -> layer of the code it names
MODULE_LAYER = [
    ("vimscope._lazy", 0),
    ("vimscope.types", 0),
    ("vimscope.config", 0),
    ("vimscope.errors", 0),
    ("vimscope.demo", 0),
    ("vimscope_kernels", 1),
    ("vimscope.io", 1),
    ("vimscope.tissue", 1),
    ("vimscope.tiling.plan", 1),
    ("vimscope.stitch", 1),
    ("vimscope.writers", 1),
    ("vimscope.postprocess", 1),
    ("vimscope.models", 2),
    ("vimscope.tiling.loader", 2),
    ("vimscope.tiling.jpegloader", 2),
    ("vimscope.stitch.device", 2),
    ("vimscope.pipeline", 3),
    ("vimscope.train", 3),
    ("vimscope.cli", 4),
    ("vimscope.runners", 4),
    ("vimscope_napari", 4),
]

# third-party modules that only some layers may import
RESTRICTED = {
    "torch": 2,
    "triton": 1,  # kernels only, checked below
    "click": 4,
    "napari": 4,
    "qtpy": 4,
    "PyQt5": 4,
    "magicgui": 4,
    "distributed": 4,
}


def _layer_of_path(rel: str) -> int:
    best = max((p for p, _ in LAYERS if rel.startswith(p)), key=len, default=None)
    assert best is not None, f"{rel} is not in the layer table; add it to DESIGN.md and this test"
    return dict(LAYERS)[best]


def _layer_of_module(name: str) -> int | None:
    best = max((m for m, _ in MODULE_LAYER if name == m or name.startswith(m + ".")), key=len, default=None)
    return None if best is None else dict(MODULE_LAYER)[best]


def _imports(tree: ast.AST, package: str):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                yield ".".join(base + ([node.module] if node.module else [])), node.lineno
            elif node.module:
                yield node.module, node.lineno


def _sources():
    for top in ("vimscope", "kernels", "plugins/napari"):
        yield from sorted((ROOT / top).rglob("*.py"))


def _package_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "kernels":
        parts[0] = "vimscope_kernels"
    elif parts[:2] == ["plugins", "napari"]:
        parts = ["vimscope_napari", *parts[2:]]
    if parts[-1] != "__init__":
        parts = parts[:-1]
    else:
        parts = parts[:-1]
    return ".".join(parts)


def test_imports_follow_the_layer_table():
    problems = []
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        layer = _layer_of_path(rel)
        tree = ast.parse(path.read_text(), filename=rel)
        for name, line in _imports(tree, _package_of(path)):
            top = name.split(".")[0]
            target = _layer_of_module(name)
            if target is not None and target > layer:
                problems.append(f"{rel}:{line} (layer {layer}) imports {name} (layer {target})")
            if rel.startswith("kernels/") and top == "vimscope":
                problems.append(f"{rel}:{line}: kernels never import vimscope")
            if top in RESTRICTED:
                allowed = RESTRICTED[top]
                if top == "triton" and not rel.startswith("kernels/"):
                    problems.append(f"{rel}:{line} imports triton outside kernels/")
                elif top == "torch" and rel.startswith("kernels/"):
                    pass  # DESIGN.md: kernels/ is layer 1 but may import torch and triton
                elif top != "triton" and layer < allowed:
                    problems.append(f"{rel}:{line} (layer {layer}) imports {top} (allowed from layer {allowed})")
    assert not problems, "\n".join(problems)


def test_every_package_is_listed_in_pyproject():
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {_package_of(p) for p in _sources() if p.name == "__init__.py"}
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"


def test_info_imports_no_heavy_modules(tmp_path):
    """`vimscope info` on a small image must not import torch, napari, Qt or distributed."""
    import numpy as np
    from PIL import Image

    img = tmp_path / "small.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(img)
    code = (
        "import sys\n"
        "from vimscope.cli.main import main\n"
        f"rc = main(['info', {str(img)!r}])\n"
        "heavy = [m for m in ('torch', 'napari', 'qtpy', 'PyQt5', 'distributed', 'triton') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
        "sys.exit(rc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout, out.stdout


@pytest.mark.parametrize("name", ["vimscope", "vimscope.io", "vimscope.models", "vimscope.pipeline"])
def test_package_imports_are_lazy(name):
    code = f"import sys, {name}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
