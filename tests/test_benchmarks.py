"""The benchmarks are a package beside vimscope, never inside it: run as ``python -m benchmarks.<area>.<name>``, no
``sys.path`` edits, the device scripts name modules that exist, and ``benchmarks/results/`` keeps one file per
benchmark and card."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
MODULES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts) for p in BENCH.rglob("*.py") if p.name != "__init__.py"
)


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def test_shipped_code_never_imports_the_benchmarks():
    shipped = [*(ROOT / "vimscope").rglob("*.py"), *(ROOT / "kernels").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]
    offenders = [
        f"{p.relative_to(ROOT)}: {name}"
        for p in shipped
        for name in _imports(p)
        if name == "benchmarks" or name.startswith("benchmarks.")
    ]
    assert not offenders, offenders


def test_no_benchmark_edits_sys_path():
    offenders = [str(p.relative_to(ROOT)) for p in BENCH.rglob("*.py") if "sys.path" in p.read_text()]
    assert not offenders, offenders


@pytest.mark.parametrize("name", MODULES)
def test_every_benchmark_module_imports(name):
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} says what it measures"


def test_device_scripts_run_modules_that_exist():
    scripts = sorted((BENCH / "device").glob("*.sh"))
    assert scripts and not list(BENCH.glob("*.sh")), "the device scripts live in benchmarks/device/ only"
    named = set()
    for script in scripts:
        text = script.read_text()
        named |= set(re.findall(r"-m (benchmarks(?:\.\w+)+)", text))
        for path in re.findall(r"\b(benchmarks/[\w/.-]+\.(?:py|sh))", text):
            assert (ROOT / path).is_file(), f"{script.name} names {path}"
    assert named, "the scripts run benchmarks as modules"
    assert named <= set(MODULES), named - set(MODULES)


def test_results_keep_one_file_per_benchmark_and_card():
    """``<benchmark>_<card>_<date>[suffix].json``: one date per (benchmark, card); older runs live in git history."""
    seen: dict[tuple[str, str], str] = {}
    for path in sorted((BENCH / "results").glob("*.json")):
        match = re.fullmatch(r"(.+?)_([a-z]+\d{2,}(?:x\d+)?|cpu)_(?:.*_)?(\d{4}-\d{2}-\d{2})\w*", path.stem)
        if match is None:  # a result without a card in its name (a CPU check)
            continue
        key = match.group(1, 2)
        assert key not in seen, f"{path.name} and {seen[key]}: keep the latest only"
        seen[key] = path.name
