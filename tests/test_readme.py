"""The README and docs/ stay honest: CI runs the README's test command, the main job's command runs the shipped
default model on the demo slide, every page and file they link or name exists, and the user-facing text keeps
to its rules (short README, no internal issue numbers, no paths outside the repository)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
TEST_COMMAND = "xvfb-run -a .venv/bin/python -m pytest -q --durations=25"
MAIN_COMMAND = (
    "bash .ci/setup runtime && .venv/bin/vimscope segment ~/.cache/vimscope/CMU-1-Small-Region.svs -o demo-out"
)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _ids(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation but '-' and '_' dropped, spaces as '-'."""
    ids = set()
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # a shell comment is not a heading
    for heading in re.findall(r"^#+ (.+)$", text, flags=re.M):
        ids.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return ids


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold commands, not links
    return LINK.findall(text)


def test_ci_runs_the_readme_test_command():
    readme = README.read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"bash .ci/setup && {TEST_COMMAND}" in readme
    assert f"\n{TEST_COMMAND}\n" in ci
    assert "\nbash .ci/setup\n" in ci, "CI sets up what the tests need (the dev set-up)"


def test_the_main_job_segments_the_demo_slide_with_the_default_model():
    assert MAIN_COMMAND in README.read_text()
    setup = (ROOT / ".ci" / "setup").read_text()
    assert "runtime | dev)" in setup and "MODE=${1:-dev}" in setup, "runtime and dev set-ups, dev by default"
    from vimscope.pipeline.config import DEFAULT_MODEL

    assert (ROOT / "vimscope" / "weights" / f"{DEFAULT_MODEL}.safetensors").is_file(), "the default model ships"


def test_readme_is_short():
    assert len(README.read_text()) <= 10_000


def test_every_page_the_readme_links_exists():
    pages = [link for link in _links(README) if link.startswith("docs/")]
    assert {"docs/pipeline.md", "docs/performance.md", "docs/kernels.md"} <= {p.split("#")[0] for p in pages}
    for link in pages:
        assert (ROOT / link.split("#")[0]).is_file(), link


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve_inside_the_repository(page):
    for link in _links(page):
        if re.match(r"[a-z]+:", link):
            continue  # https:, mailto:
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.is_relative_to(ROOT), f"{link} leaves the repository"
        assert target.exists(), f"{page.name}: {link} does not exist"
        if anchor and target.suffix == ".md":
            assert anchor in _ids(target), f"{page.name}: no heading #{anchor} in {target.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_user_facing_text_keeps_its_rules(page):
    text = page.read_text()
    assert not re.search(r"\bissues? #?\d+|(?<![\w&])#\d+\b", text, flags=re.I), "no internal issue numbers"
    if page.parent.name == "docs":
        assert not re.search(r"\.\./shared|/work/|/tmp/|/root/|\.\./\.\./", text), "no paths outside the repository"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_named_files_and_benchmarks_exist(page):
    """Repository paths in backticks (`benchmarks/...`, `vimscope/...`, `configs/...`) and benchmark modules exist."""
    text = page.read_text()
    for path in re.findall(r"`((?:benchmarks|vimscope|kernels|plugins|configs|docs|tests)/[\w./{},-]*)`", text):
        if "{" in path or "<" in path:
            continue
        assert (ROOT / path.rstrip("/")).exists(), f"{page.name} names {path}"
    for module in re.findall(r"-m (benchmarks(?:\.\w+)+)", text):
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), f"{page.name} runs {module}"


def test_the_models_the_readme_lists_are_registered():
    configs = {p.stem for p in (ROOT / "vimscope" / "configs" / "models").glob("*.yaml")}
    table = README.read_text().split("## Models", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(vim_\w+?)\*?`", table))
    assert named and all(n in configs or any(c.startswith(n) for c in configs) for n in named), named - configs


def test_the_commands_the_readme_shows_exist():
    from vimscope.cli.main import SUBCOMMANDS

    commands = set(re.findall(r"^vimscope (\w+)", README.read_text(), flags=re.M))
    assert {"info", "segment", "batch", "train", "eval"} <= commands
    assert commands <= set(SUBCOMMANDS), commands - set(SUBCOMMANDS)
