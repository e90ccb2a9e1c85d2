"""docs/exit-codes.md lists every exit code of vimscope/errors.py, with its class, and nothing else."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import vimscope.errors as errors

DOC = Path(__file__).resolve().parents[2] / "docs" / "exit-codes.md"
NOT_ERRORS = {0: "success", 2: "usage error (click)", 70: "internal error (cli.main)"}  # codes no class carries


def _error_codes() -> dict[int, str]:
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.VimscopeError)]
    by_code: dict[int, list[str]] = {}
    for c in classes:
        by_code.setdefault(c.exit_code, []).append(c.__name__)
    duplicated = {code: names for code, names in by_code.items() if len(names) > 1}
    assert not duplicated, f"one exit code per error class: {duplicated}"
    return {code: names[0] for code, names in by_code.items()}


def _doc_rows() -> dict[int, str]:
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"^\| (\d+) \| (`(\w+)`|-) \| (.+) \|$", line)
        if m:
            code = int(m.group(1))
            assert code not in rows, f"exit code {code} listed twice"
            rows[code] = m.group(3) or "-"
    return rows


def test_the_exit_code_table_matches_errors_py():
    rows, codes = _doc_rows(), _error_codes()
    assert {c: n for c, n in rows.items() if n != "-"} == codes  # every class, with its own code
    assert {c for c, n in rows.items() if n == "-"} == set(NOT_ERRORS)
    assert list(rows) == sorted(rows)


def test_the_cli_gives_the_codes_the_table_names(monkeypatch, capsys):
    import vimscope.cli.main as cli_main

    assert cli_main.main(["segment", "--no-such-option"]) == 2
    assert "No such option" in capsys.readouterr().err
    for raised, code in ((RuntimeError("a bug"), 70), (errors.Cancelled("stop"), 130), (errors.OutputError("x"), 9)):

        def fail(*a, raised=raised, **k):
            raise raised

        monkeypatch.setattr(cli_main.cli, "main", fail)
        assert cli_main.main(["info", "x"]) == code
        err = capsys.readouterr().err.strip()
        assert err.startswith("vimscope:") and "\n" not in err
