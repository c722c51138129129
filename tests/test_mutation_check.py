"""tools/mutation_check.py on a tiny repository of its own: a caught breakage, one that survives, a stale snippet,
a pending row, a test that fails on the unchanged code, and a malformed list."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def load_tool():
    spec = importlib.util.spec_from_file_location("mutation_check", ROOT / "tools" / "mutation_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


mutation_check = load_tool()


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git working tree (nothing committed: untracked files are part of the copy) with one tested
    function and one untested one, and an ignored file that must not be copied."""
    root = tmp_path / "repo"
    (root / "tests").mkdir(parents=True)
    (root / "calc.py").write_text("def add(a, b):\n    return a + b\n\n\ndef unused():\n    return 1\n")
    (root / "tests" / "test_calc.py").write_text(
        "import os\n\nfrom calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
        "def test_ignored_files_are_not_copied():\n    assert not os.path.exists('exp')\n")
    (root / ".gitignore").write_text("exp/\n")
    (root / "exp").mkdir()
    (root / "exp" / "big.bin").write_text("generated")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    # The tool's pytest runs inherit this: loading the venv's plugins takes seconds on a loaded machine, and
    # the tiny repository needs none.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return root


def write_list(path: Path, rows: list[dict]) -> Path:
    path.write_text(yaml.safe_dump(rows, allow_unicode=True))
    return path


def run(repo: Path, rows: list[dict], capsys, *extra: str) -> tuple[int, str]:
    """The tool's main() on ``rows`` in ``repo``: its exit status and what it printed."""
    listed = write_list(repo.parent / "mutations.yaml", rows)
    status = mutation_check.main(["--repo", str(repo), "--list", str(listed), "--python", sys.executable, *extra])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_caught_survived_stale_and_pending_rows(repo, capsys):
    rows = [
        {"id": "add-subtracts", "file": "calc.py", "old": "return a + b", "new": "return a - b",
         "tests": ["tests/test_calc.py::test_add"]},
        {"id": "unused-changed", "file": "calc.py", "old": "return 1", "new": "return 2", "tests": ["tests/test_calc.py"]},
        {"id": "moved-on", "file": "calc.py", "old": "return a * b", "new": "return a / b", "tests": ["tests"]},
        {"id": "twice", "file": "calc.py", "old": "return", "new": "yield", "tests": ["tests"]},
        {"id": "later", "file": "calc.py", "old": "return a + b", "new": "return b", "tests": ["tests"],
         "pending": "being rewritten"},
    ]
    status, out = run(repo, rows, capsys)
    assert status == 1
    lines = {line.split()[1]: line for line in out.splitlines() if line.split()[:1] != ["baseline:"] and " " in line}
    assert lines["add-subtracts"].startswith("caught") and "test_calc.py::test_add" in lines["add-subtracts"]
    assert lines["unused-changed"].startswith("SURVIVED")
    assert lines["moved-on"].startswith("STALE") and "occurs 0 times in calc.py" in lines["moved-on"]
    assert lines["twice"].startswith("STALE") and "occurs 2 times" in lines["twice"]
    assert lines["later"].startswith("pending") and "being rewritten" in lines["later"]
    assert "baseline: 3 test id(s) on the unchanged code: pass" in out
    assert "summary: 1/4 caught, 1 survived, 2 stale, 0 error(s), 1 pending (not run)" in out
    assert (repo / "calc.py").read_text().count("return a + b") == 1  # the repository itself is untouched

    status, out = run(repo, rows, capsys, "--only", "add-subtracts", "later", "--no-baseline")
    assert status == 0 and "summary: 1/1 caught" in out and "baseline" not in out


def test_a_test_failing_on_the_unchanged_code_stops_the_check(repo, capsys):
    (repo / "tests" / "test_calc.py").write_text("from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 6\n")
    rows = [{"id": "add-subtracts", "file": "calc.py", "old": "return a + b", "new": "return a - b",
             "tests": ["tests/test_calc.py"]}]
    status, out = run(repo, rows, capsys)
    assert status == 1
    assert "FAIL" in out and "fail on the unchanged code" in out and "add-subtracts" not in out.split("FAIL", 1)[0]


@pytest.mark.parametrize("rows, message", [
    ([{"id": "a", "file": "calc.py", "old": "x", "new": "y"}], r"missing key\(s\) \['tests'\]"),
    ([{"id": "a", "file": "calc.py", "old": "x", "new": "y", "tests": ["t"], "test": 1}], "unknown key"),
    ([{"id": "a", "file": "calc.py", "old": "x", "new": "x", "tests": ["t"]}], "changes nothing"),
    ([{"id": "a", "file": "f", "old": "x", "new": "y", "tests": ["t"]}] * 2, "used twice"),
])
def test_a_malformed_list_is_one_clear_error(repo, capsys, rows, message):
    status, out = run(repo, rows, capsys)
    assert status == 2
    assert out.startswith("mutation_check: ") and "mutations.yaml: entry" in out
    assert re.search(message, out)


def test_the_repository_list_is_well_formed_and_its_snippets_are_current():
    """The project's own list: every row loads, names test files that exist, and (pending rows aside) finds
    its old snippet exactly once, so a refactoring that moves a snippet shows up here, not only in a full run."""
    rows = mutation_check.load_mutations(ROOT / "tools" / "mutations.yaml")
    assert len(rows) >= 20
    for row in rows:
        for test in row.tests:
            assert (ROOT / test.split("::")[0]).exists(), (row.id, test)
        if not row.pending:
            assert (ROOT / row.file).read_text(encoding="utf-8").count(row.old) == 1, row.id
