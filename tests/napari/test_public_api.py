"""The napari plugin is a face: it imports vimscope only through public APIs (a package or a top-level module of
vimscope; names in its ``__all__`` where it has one, else names without a leading underscore), so the stages can
change inside without breaking it."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "napari"


def _vimscope_imports():
    for path in sorted(PLUGIN.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "vimscope":
                yield f"{path.name}:{node.lineno}", node.module, [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "vimscope":
                        yield f"{path.name}:{node.lineno}", a.name, []


def test_plugin_imports_only_public_vimscope_names():
    problems, seen = [], 0
    for where, module, names in _vimscope_imports():
        seen += 1
        parts = module.split(".")
        if len(parts) > 2 or any(p.startswith("_") for p in parts):
            problems.append(f"{where}: {module} is not a public package or module of vimscope")
            continue
        exported = getattr(importlib.import_module(module), "__all__", None)
        hidden = [n for n in names if (n not in exported if exported is not None else n.startswith("_"))]
        problems += [f"{where}: {module}.{n} is not public" for n in hidden]
    assert seen > 10, "the scan found no imports: has the plugin moved?"
    assert not problems, "\n".join(problems)
