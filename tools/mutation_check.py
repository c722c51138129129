#!/usr/bin/env python3
"""Mutation check: does the test suite catch the breakages it is meant to catch?

Reads a list of breakages (default: tools/mutations.yaml next to this script). Each entry:

    - id: ctc-blank-zero                 # a short unique name
      file: hdmole/models/llm_asr.py     # relative to the repository root
      old: "blank=self.ctc_blank,"       # an exact snippet that occurs exactly once in the file
      new: "blank=0,"                    # what replaces it
      tests: [tests/test_models_llm_asr.py::test_ctc_loss_uses_the_last_id_as_blank]  # pytest node ids/files
      pending: "why it is not run now"   # optional: reported as skipped, not run
      why: "..."                         # optional: the realistic bug it stands for

For each entry it copies the repository (the files git tracks plus the untracked ones it does not ignore,
so uncommitted edits are included, and never data/, exp/ or the venv) into a temporary directory, applies
that one change, and runs the named tests there with the venv's python (PYTHONPATH at the copy, the
environment of path.sh). A row is ``caught`` when pytest reports a failing test, ``SURVIVED`` when the tests
pass, ``STALE`` when the old snippet is not found exactly once (the code moved on: update the row), ``ERROR``
when pytest could not run the tests (a wrong node id, a collection error) or timed out. First, unless
--no-baseline, the tests of every row run once on the unchanged copy: a test that fails there would make
every row that names it look caught, so then nothing else runs.

Exit status 0 only when every row that ran was caught (pending rows do not count); 1 otherwise.

    tools/venv/bin/python tools/mutation_check.py                 # every row
    tools/venv/bin/python tools/mutation_check.py --only ctc-blank-zero cmvn-multiplies
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
KEYS = {"id", "file", "old", "new", "tests", "pending", "why"}
# Ignored paths of the checkout that tests use from the copy: linked, never copied.
LINKED = ("tools/venv", "tools/kenlm")


class ListError(ValueError):
    """The mutation list itself is wrong (a missing key, a duplicate id)."""


@dataclass
class Mutation:
    id: str
    file: str
    old: str
    new: str
    tests: list[str]
    pending: str | None = None
    why: str = ""


@dataclass
class Outcome:
    mutation: Mutation
    status: str  # caught | SURVIVED | STALE | ERROR | pending
    detail: str = ""
    seconds: float = 0.0
    output: list[str] = field(default_factory=list)


def load_mutations(path: Path) -> list[Mutation]:
    try:
        rows = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ListError(f"{path}: cannot read the mutation list ({error})") from None
    if not isinstance(rows, list):
        raise ListError(f"{path}: expected a YAML list of mutations, got {type(rows).__name__}")
    out, seen = [], set()
    for n, row in enumerate(rows, start=1):
        where = f"{path}: entry {n}" + (f" ({row.get('id')})" if isinstance(row, dict) and row.get("id") else "")
        if not isinstance(row, dict):
            raise ListError(f"{where}: expected a mapping with keys id, file, old, new, tests")
        unknown = set(row) - KEYS
        if unknown:
            raise ListError(f"{where}: unknown key(s) {sorted(unknown)}; valid keys are {sorted(KEYS)}")
        missing = [k for k in ("id", "file", "old", "new", "tests") if k not in row]
        if missing:
            raise ListError(f"{where}: missing key(s) {missing}")
        tests = row["tests"]
        if isinstance(tests, str):
            tests = [tests]
        if not tests or not all(isinstance(t, str) and t for t in tests):
            raise ListError(f"{where}: 'tests' must name at least one pytest node id or file")
        if row["id"] in seen:
            raise ListError(f"{where}: id {row['id']!r} is used twice")
        if row["old"] == row["new"]:
            raise ListError(f"{where}: 'old' and 'new' are the same: that changes nothing")
        seen.add(row["id"])
        pending = row.get("pending")
        out.append(Mutation(str(row["id"]), str(row["file"]), str(row["old"]), str(row["new"]), list(tests),
                            None if pending in (None, False) else str(pending), str(row.get("why", ""))))
    return out


def repository_files(repo: Path) -> list[str]:
    """Tracked files and untracked ones git does not ignore (the working tree as it is, uncommitted edits
    included); deleted tracked files are left out."""
    result = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                            capture_output=True, text=True, check=True)
    names = sorted({name for name in result.stdout.split("\0") if name})
    return [name for name in names if (repo / name).is_file() or (repo / name).is_symlink()]


def copy_repository(repo: Path, files: list[str], dest: Path) -> None:
    for name in files:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        source = repo / name
        if source.is_symlink():
            os.symlink(os.readlink(source), target)
        else:
            shutil.copy2(source, target)
    for name in LINKED:
        if (repo / name).exists() and not (dest / name).exists():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            os.symlink((repo / name).resolve(), dest / name)


def child_environment(copy: Path) -> dict:
    """What path.sh sets up, with the copy as the repository."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["HDMOLE_ROOT"] = str(copy)
    env["PATH"] = os.pathsep.join([str(copy / "utils"), str(copy / "tools" / "kenlm" / "bin"), env.get("PATH", "")])
    env.update(LC_ALL="C", PYTHONUTF8="1", PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def run_tests(python: str, copy: Path, tests: list[str], timeout: float) -> tuple[int | None, list[str]]:
    """pytest's exit status (None on a timeout) and the last lines of its output."""
    cmd = [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-rf", *tests]
    try:
        result = subprocess.run(cmd, cwd=copy, env=child_environment(copy), capture_output=True, text=True,
                                timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, []
    lines = (result.stdout + result.stderr).strip().splitlines()
    return result.returncode, lines[-15:]


def apply_mutation(copy: Path, mutation: Mutation) -> str | None:
    """Applies the change in the copy; the reason when it cannot (the snippet is stale)."""
    path = copy / mutation.file
    if not path.is_file():
        return f"{mutation.file} does not exist"
    text = path.read_text(encoding="utf-8")
    count = text.count(mutation.old)
    if count != 1:
        return f"the old snippet occurs {count} times in {mutation.file} (expected exactly once)"
    path.write_text(text.replace(mutation.old, mutation.new), encoding="utf-8")
    return None


def failed_tests(lines: list[str]) -> str:
    failed = [line.split(" ", 2)[1] for line in lines if line.startswith("FAILED ")]
    return ", ".join(failed[:3]) if failed else (lines[-1] if lines else "")


def check(mutation: Mutation, repo: Path, files: list[str], python: str, timeout: float) -> Outcome:
    if mutation.pending:
        return Outcome(mutation, "pending", mutation.pending)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"mutation-{mutation.id}-") as tmp:
        copy = Path(tmp)
        copy_repository(repo, files, copy)
        stale = apply_mutation(copy, mutation)
        if stale:
            return Outcome(mutation, "STALE", stale)
        status, lines = run_tests(python, copy, mutation.tests, timeout)
    seconds = time.monotonic() - start
    if status is None:
        return Outcome(mutation, "ERROR", f"timed out after {timeout:.0f} s", seconds)
    if status == 0:
        return Outcome(mutation, "SURVIVED", "the named tests pass", seconds, lines)
    if status == 1:
        return Outcome(mutation, "caught", failed_tests(lines), seconds)
    return Outcome(mutation, "ERROR", f"pytest exit status {status}: {lines[-1] if lines else ''}", seconds, lines)


def baseline(mutations: list[Mutation], repo: Path, files: list[str], python: str, timeout: float) -> bool:
    """The named tests pass on the unchanged copy (else every row naming a failing test looks caught)."""
    tests = list(dict.fromkeys(t for m in mutations if not m.pending for t in m.tests))
    if not tests:
        return True
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mutation-baseline-") as tmp:
        copy_repository(repo, files, Path(tmp))
        status, lines = run_tests(python, Path(tmp), tests, timeout)
    print(f"baseline: {len(tests)} test id(s) on the unchanged code: "
          f"{'pass' if status == 0 else 'FAIL'} ({time.monotonic() - start:.0f} s)", flush=True)
    if status != 0:
        print("\n".join("    " + line for line in lines) if lines else f"    timed out after {timeout:.0f} s")
    return status == 0


def default_python(repo: Path) -> str:
    venv = repo / "tools" / "venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", type=Path, default=HERE / "mutations.yaml", help="the mutation list (YAML)")
    parser.add_argument("--repo", type=Path, default=HERE.parent, help="the repository to copy (default: this one)")
    parser.add_argument("--python", help="the interpreter that runs pytest (default: the repo's tools/venv)")
    parser.add_argument("--only", nargs="+", metavar="ID", help="run only these rows")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per pytest run (default 3600)")
    parser.add_argument("--no-baseline", action="store_true", help="skip running the tests on the unchanged code")
    parser.add_argument("--verbose", action="store_true", help="show pytest's output for rows not caught")
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    try:
        mutations = load_mutations(args.list)
    except ListError as error:
        print(f"mutation_check: {error}", file=sys.stderr)
        return 2
    if args.only:
        unknown = sorted(set(args.only) - {m.id for m in mutations})
        if unknown:
            print(f"mutation_check: no row with id {unknown} in {args.list}", file=sys.stderr)
            return 2
        mutations = [m for m in mutations if m.id in args.only]
    python = args.python or default_python(repo)
    try:
        files = repository_files(repo)
    except (OSError, subprocess.CalledProcessError):
        print(f"mutation_check: {repo} is not a git working tree (its files are listed with git ls-files)",
              file=sys.stderr)
        return 2
    if not args.no_baseline and not baseline(mutations, repo, files, python, args.timeout):
        print("mutation_check: the named tests fail on the unchanged code; fix that first", file=sys.stderr)
        return 1
    outcomes = []
    width = max((len(m.id) for m in mutations), default=0)
    for mutation in mutations:
        outcome = check(mutation, repo, files, python, args.timeout)
        outcomes.append(outcome)
        took = f" ({outcome.seconds:.0f} s)" if outcome.seconds else ""
        print(f"{outcome.status:8} {mutation.id:{width}}  {outcome.detail}{took}", flush=True)
        if args.verbose and outcome.output and outcome.status != "caught":
            print("\n".join("    " + line for line in outcome.output))
    counts = {s: sum(o.status == s for o in outcomes) for s in ("caught", "SURVIVED", "STALE", "ERROR", "pending")}
    ran = len(outcomes) - counts["pending"]
    print(f"summary: {counts['caught']}/{ran} caught, {counts['SURVIVED']} survived, {counts['STALE']} stale, "
          f"{counts['ERROR']} error(s), {counts['pending']} pending (not run)")
    return 0 if counts["caught"] == ran else 1


if __name__ == "__main__":
    sys.exit(main())
