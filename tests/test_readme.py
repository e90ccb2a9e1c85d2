"""CI runs exactly the README's test command."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = "xvfb-run -a .venv/bin/python -m pytest -q --durations=25"
    assert f"bash .ci/setup && {command}" in readme
    assert f"\n{command}\n" in ci
