"""The shape rules of the project brief, checked on the source text (pure AST, no imports of the code):

- no file over 500 lines outside ``kernels/`` and ``tests/`` (a longer file is asking to be split along a seam);
- no function or method over 80 lines outside ``tests/``, kernel bodies excepted (``@triton.jit`` functions, and the
  numba-compiled functions listed in ``COMPILED_KERNELS``);
- no import cycle among the modules of ``vimscope``, ``vimscope_kernels`` and ``vimscope_napari``.

Each test lists every offender at once, so one run shows the whole of what is left.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80

# Plain-Python functions that numba compiles unchanged (``numba.njit(f)`` where they are used): kernel bodies too.
# Splitting one would mean compiling each piece and passing the bit-reader state between them.
COMPILED_KERNELS = {
    ("vimscope/io/jpeg/_walk.py", "walk"): "the Huffman walker of the JPEG damage check (io/jpeg/check.py compiles it)",
}

# folders never walked: environments, build outputs, caches
_SKIP_DIRS = {".venv", "venv", ".git", "build", "dist", "node_modules", "__pycache__"}

# import name -> folder, as pyproject.toml maps them
PACKAGES = {"vimscope": "vimscope", "vimscope_kernels": "kernels", "vimscope_napari": "plugins/napari"}


def python_files() -> Iterator[Path]:
    """Every ``.py`` file of the repository (hidden folders, environments and build outputs left out)."""
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(
            d for d in dirs if d not in _SKIP_DIRS and not d.startswith(".") and not d.endswith(".egg-info")
        )
        for name in sorted(files):
            if name.endswith(".py"):
                yield Path(folder) / name


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _top(path: Path) -> str:
    return _rel(path).split("/")[0]


# ---- sizes ------------------------------------------------------------------------------------------------------


def _is_kernel_body(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A ``@triton.jit`` (or ``@triton.jit(...)``, ``@jit``) function: a kernel body, exempt from the length rule."""
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = ast.unparse(target)
        if name in ("triton.jit", "jit") or name.endswith("triton.jit"):
            return True
    return False


def long_functions(tree: ast.AST, limit: int = MAX_FUNCTION_LINES) -> Iterator[tuple[str, int, int]]:
    """``(qualified name, first line, lines)`` of each function or method longer than ``limit`` lines (the ``def``
    line to the last line of its body; decorators not counted), kernel bodies left out."""

    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[str, int, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                lines = child.end_lineno - child.lineno + 1
                if lines > limit and not _is_kernel_body(child):
                    yield name, child.lineno, lines
                yield from visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, f"{prefix}{child.name}.")
            else:
                yield from visit(child, prefix)

    yield from visit(tree, "")


def test_no_file_over_500_lines_outside_kernels_and_tests():
    problems = []
    for path in python_files():
        if _top(path) in ("kernels", "tests"):
            continue
        lines = len(path.read_text().splitlines())
        if lines > MAX_FILE_LINES:
            problems.append(f"{_rel(path)}: {lines} lines")
    assert not problems, f"files over {MAX_FILE_LINES} lines (split them along a seam):\n" + "\n".join(problems)


def test_no_function_over_80_lines_outside_kernel_bodies():
    problems = []
    for path in python_files():
        if _top(path) == "tests":
            continue
        tree = ast.parse(path.read_text(), filename=_rel(path))
        problems += [
            f"{_rel(path)}:{line} {name}: {n} lines"
            for name, line, n in long_functions(tree)
            if (_rel(path), name) not in COMPILED_KERNELS
        ]
    assert not problems, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(problems)


def test_every_listed_compiled_kernel_is_still_compiled():
    """An entry of ``COMPILED_KERNELS`` names a function that exists and that its package hands to ``numba.njit``."""
    problems = []
    for rel, name in COMPILED_KERNELS:
        path = ROOT / rel
        tree = ast.parse(path.read_text()) if path.exists() else ast.Module(body=[], type_ignores=[])
        if not any(isinstance(n, ast.FunctionDef) and n.name == name for n in tree.body):
            problems.append(f"{rel}: no function {name}")
        package = path.parent
        compiled = re.compile(rf"\bnjit\b.*\(\s*{name}\s*\)")  # numba.njit(walk), numba.njit(cache=True)(walk)
        if not any(compiled.search(p.read_text()) for p in package.glob("*.py")):
            problems.append(f"{rel}: {name} is not compiled by numba.njit in {package.relative_to(ROOT)}")
    assert not problems, "stale COMPILED_KERNELS entries:\n" + "\n".join(problems)


def test_the_length_rule_counts_def_to_end_and_exempts_kernels():
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    tree = ast.parse(
        f"@triton.jit\ndef kernel():\n{body}\n"
        f"@triton.jit(do_not_specialize=['L'])\ndef kernel2():\n{body}\n"
        f"class A:\n    def long(self):\n{body.replace('    ', '        ')}\n"
        f"    def short(self):\n        return 1\n"
        f"def fits():\n{chr(10).join(body.splitlines()[:79])}\n"
    )
    assert list(long_functions(tree)) == [("A.long", 166, 81)]


# ---- import cycles ----------------------------------------------------------------------------------------------


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for the three import packages (``pkg/__init__.py`` is ``pkg``)."""
    files = {}
    for package, folder in PACKAGES.items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join([package, *parts])] = path
    return files


def _is_type_checking(test: ast.expr) -> bool:
    return ast.unparse(test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def module_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """The imports that run when the module is imported: at module level, inside ``if``/``try``/``with`` blocks and
    class bodies, but not inside functions (lazy imports, PEP 562 ``__getattr__``) nor ``if TYPE_CHECKING:``."""
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
        elif isinstance(node, ast.stmt):
            stack.extend(
                child for child in ast.iter_child_nodes(node) if isinstance(child, (ast.stmt, ast.excepthandler))
            )
        elif isinstance(node, ast.excepthandler):
            stack.extend(node.body)


def lazy_table(tree: ast.Module, modules) -> dict[str, str]:
    """A package ``__init__``'s lazy re-exports: exported name -> the module that defines it. The table is the
    module-level dict literal (``_LAZY``, ``_EXPORTS``, whatever its name) whose every value is one of ``modules``,
    or a ``(module, attribute)`` pair."""
    table = {}
    for node in tree.body:
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or not isinstance(node.value, ast.Dict):
            continue
        entries = {}
        for key, value in zip(node.value.keys, node.value.values, strict=True):
            if isinstance(value, ast.Tuple) and value.elts:
                value = value.elts[0]
            if isinstance(key, ast.Constant) and isinstance(value, ast.Constant) and value.value in modules:
                entries[key.value] = value.value
        if entries and len(entries) == len(node.value.keys):
            table.update(entries)
    return table


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute name of ``from <...> import``'s module part, relative levels resolved."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    """Module -> the modules of ``sources`` (name -> source text; a name ending in ``.__init__`` is a package) that
    its module-level imports run. ``from pkg import name`` counts as importing ``pkg.name`` when that is a module,
    and the module named in ``pkg``'s lazy table when ``name`` is a lazy re-export (its ``__getattr__`` imports it
    then); otherwise it imports ``pkg`` itself."""
    trees = {
        name.removesuffix(".__init__"): (ast.parse(src), name.endswith(".__init__")) for name, src in sources.items()
    }
    lazy = {name: lazy_table(tree, trees) for name, (tree, is_package) in trees.items() if is_package}
    graph: dict[str, set[str]] = {name: set() for name in trees}
    for name, (tree, is_package) in trees.items():
        for node in module_level_imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(node, name, is_package)
                targets = []
                for alias in node.names:
                    if f"{base}.{alias.name}" in trees:
                        targets.append(f"{base}.{alias.name}")
                    else:
                        targets.append(lazy.get(base, {}).get(alias.name, base))
            graph[name] |= {t for t in targets if t in trees and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(sorted(graph[root])))]
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.add(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def _cycle_path(component: set[str], graph: dict[str, set[str]]) -> str:
    """One closed walk through ``component`` (breadth-first from its first module back to it), for the message."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    path = [start]
                    while v != start:
                        path.append(v)
                        v = previous[v]
                    return " -> ".join([start, *reversed(path[1:]), start])
                if w not in previous:
                    previous[w] = v
                    following.append(w)
        frontier = following
    return " <-> ".join(sorted(component))


def test_no_import_cycle():
    files = module_files()
    sources = {}
    for name, path in files.items():
        sources[f"{name}.__init__" if path.name == "__init__.py" else name] = path.read_text()
    graph = import_graph(sources)
    found = cycles(graph)
    problems = [f"{sorted(c)}\n    e.g. {_cycle_path(c, graph)}" for c in sorted(found, key=min)]
    assert not problems, "import cycles (module-level imports):\n" + "\n".join(problems)


def test_the_cycle_finder_reads_imports_as_python_runs_them():
    sources = {
        "p.__init__": "import importlib\n_EXPORTS = {'f': 'p.a', 'g': ('p.c', 'g')}\nOTHER = {'x': 'text'}\n",
        "p.a": "from p import b\nfrom . import c\n",
        "p.b": "from p import f\n",  # lazy re-export: runs p.a
        "p.c": "def h():\n    import p.a\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import p.a\n",
        "p.d": "try:\n    from .c import x\nexcept ImportError:\n    import p.e\n",
        "p.e": "class K:\n    from p.d import y\n",
    }
    graph = import_graph(sources)
    assert graph == {
        "p": set(),
        "p.a": {"p.b", "p.c"},
        "p.b": {"p.a"},
        "p.c": set(),
        "p.d": {"p.c", "p.e"},
        "p.e": {"p.d"},
    }
    assert sorted(map(sorted, cycles(graph))) == [["p.a", "p.b"], ["p.d", "p.e"]]
    assert _cycle_path({"p.a", "p.b"}, graph) == "p.a -> p.b -> p.a"
