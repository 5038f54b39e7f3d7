"""Mutation testing of rrbench's core logic: one small plausible bug at a time, then the module's fast tests.

    python scripts/mutation.py [--module NAME ...] [--max-mutants N] [--jobs J] [--seed S] [--list] [--json FILE]

The working tree (tracked and untracked, not ignored, files) is copied to a temporary folder once per job; each
mutant is written into that copy only, the module's tests run there with ``pytest -x -q`` under a per-mutant
timeout, and the original file is put back. Nothing under the repository is modified. The operators, the module to
test mapping and the equivalent mutants are documented in docs/mutation.md (the equivalent ones are read from its
table, so a survivor listed there is reported as equivalent, not as a gap).

Each job is a worker process that imports the heavy third-party packages once and forks one child per mutant; the
child imports rrbench from the copy afresh, so the mutant is what the tests see.
"""

from __future__ import annotations

import argparse
import ast
import base64
import contextlib
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from fnmatch import fnmatch
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "mutation.md"
PRAGMA = "pragma: no mutate"
SMALL_INTS = range(0, 17)  # constants that get +1/-1 (indices, counts, K, the 0..10 grid of Pick-a-Pic)
KWARGS_NEVER_DROPPED = {"strict"}  # zip(strict=True) only adds a check: dropping it is always equivalent
PYTEST_ARGS = ("-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "--no-header", "-W", "ignore")


# --------------------------------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """A module under mutation and the fast tests that should catch its bugs (in this order; -x stops early).

    ``only``: qualified names (``func``, ``Class.method``, a module-level assignment's name) to mutate; empty: the
    whole module. ``skip``: qualified names left alone (prompt text, rendering). ``deselect``: slow test ids."""

    path: str
    tests: tuple[str, ...]
    only: frozenset[str] = frozenset()
    skip: frozenset[str] = frozenset()
    deselect: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.path


K = "tests/test_mutation_killers"
# Slow property tests (a brute-force epsilon search, scipy cross-checks, interval coverage grids) and end-to-end
# runs are left out: each surviving mutant pays for every test in its list, and the killers cover the same logic.
_SLOW_METRIC_TESTS = ("tests/test_metrics_policies.py::test_tie_calibrated_epsilon_matches_brute_force",
                      "tests/test_metrics_policies.py::test_rank_correlations_match_scipy")
_METRIC_TESTS = (f"{K}_metrics.py", "tests/test_metrics_golden.py", "tests/test_metrics_policies.py",
                 "tests/test_metrics_bootstrap.py")
_RULE_TESTS = (f"{K}_rules.py", f"{K}_metrics.py", "tests/test_metrics_golden.py", "tests/test_metrics_policies.py")
_LEADERBOARD_TESTS = (f"{K}_leaderboard.py", "tests/test_leaderboard.py")
_REGENERATE = ("tests/test_leaderboard.py::test_committed_leaderboards_are_regenerated_output",)
_PROMPT_TEXT = frozenset({"_rubric", "_task_line", "_source_parts", "_pointwise_format", "_pairwise_format",
                          "build_pointwise", "build_pairwise", "_verdict_instructions", "build_verdict_prompt",
                          "own_prompts", "_ASPECT_RUBRIC", "_SCALE", "AGGREGATIONS", "OWN_VERSION",
                          "PARSER_VERSION"})

TARGETS: tuple[Target, ...] = (
    Target("rrbench/store.py", (f"{K}_store.py", "tests/test_store.py")),
    Target("rrbench/metrics/pairs.py", _METRIC_TESTS, deselect=_SLOW_METRIC_TESTS),
    Target("rrbench/metrics/_ties.py", _METRIC_TESTS, deselect=_SLOW_METRIC_TESTS),
    Target("rrbench/metrics/_rules.py", (*_METRIC_TESTS, f"{K}_rules.py"), deselect=_SLOW_METRIC_TESTS,
           skip=frozenset({"tie_policies", "_Policies.__iter__", "_Policies.__len__", "_Policies.__getitem__"})),
    Target("rrbench/metrics/ranking.py", _METRIC_TESTS, deselect=_SLOW_METRIC_TESTS),
    Target("rrbench/metrics/_core.py", _METRIC_TESTS, deselect=_SLOW_METRIC_TESTS),
    Target("rrbench/metrics/_bootstrap.py", (*_METRIC_TESTS, "tests/test_metrics_intervals.py"),
           deselect=_SLOW_METRIC_TESTS),
    Target("rrbench/protocols/pairwise.py", (f"{K}_protocol.py", "tests/test_protocol.py")),
    Target("rrbench/models/_rationalrewards_format.py", (f"{K}_parser.py", "tests/test_rationalrewards_parser.py"),
           skip=_PROMPT_TEXT),
    Target("rrbench/backends/openai_http.py", (f"{K}_http.py",),
           only=frozenset({"OpenAIHTTPBackend.chat", "OpenAIHTTPBackend._completion", "OpenAIHTTPBackend._post",
                           "_final", "RETRYABLE"})),
    Target("tasks/rule_editreward.py", _RULE_TESTS, deselect=_SLOW_METRIC_TESTS),
    Target("tasks/rule_editreward_ties.py", _RULE_TESTS, deselect=_SLOW_METRIC_TESTS),
    Target("tasks/rule_editreward_without_ties.py", _RULE_TESTS, deselect=_SLOW_METRIC_TESTS),
    Target("tasks/rule_genai_4way.py", _RULE_TESTS, deselect=_SLOW_METRIC_TESTS),
    Target("tasks/rule_genai_4way_lenient.py", _RULE_TESTS, deselect=_SLOW_METRIC_TESTS),
    Target("tasks/rule_imagereward.py", _RULE_TESTS, deselect=_SLOW_METRIC_TESTS),
    Target("tasks/rule_mmrb2.py", _RULE_TESTS, deselect=_SLOW_METRIC_TESTS),
    Target("tasks/rule_pickapic.py", _RULE_TESTS, deselect=_SLOW_METRIC_TESTS),
    Target("tasks/_editreward_parse.py", (f"{K}_rules.py",)),
    Target("tasks/editreward_bench.py", (f"{K}_tasks.py",), only=frozenset({"_meta"})),
    Target("rrbench/leaderboard/tables.py", _LEADERBOARD_TESTS, deselect=_REGENERATE),
    Target("rrbench/leaderboard/collect.py", _LEADERBOARD_TESTS, deselect=_REGENERATE),
)


# --------------------------------------------------------------------------------------------------- mutants


@dataclass
class Mutant:
    path: str
    line: int
    scope: str  # the enclosing function or class ("Class.method"), "" at module level
    operator: str
    original: str  # the original line, stripped
    mutated: str  # the mutated line (the first line of the replacement), stripped
    start: int  # byte offsets of the replaced span in the original file
    end: int
    replacement: str
    status: str = "pending"  # killed | timeout | survived | error
    seconds: float = 0.0
    killed_by: str = ""
    equivalent: str = ""  # the reason docs/mutation.md gives, when the survivor is listed there

    def apply(self, source: bytes) -> bytes:
        return source[: self.start] + self.replacement.encode() + source[self.end:]


_COMPARE_SWAP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In,
}
_DELETABLE = (ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Raise, ast.Return, ast.If, ast.For, ast.While,
              ast.Continue, ast.Break, ast.Delete)
OPERATORS = {
    "compare": "swap a comparison: < <=, > >=, == !=, is / is not, in / not in",
    "boolop": "swap and / or",
    "not": "remove a negation (not x -> x)",
    "constant": "True <-> False; a small int n (0..16) -> n+1 and n-1; 0.0 <-> 1.0",
    "delete": "replace a statement inside a function with pass (reported as the line it removes)",
    "return-none": "return x -> return None, in a function typed to return an Optional",
    "drop-kwarg": "remove one keyword argument of a call, so the callee's default applies",
    "drop-element": "remove one element of a literal tuple/list/set/dict of constants",
}


class _Finder:
    """Walks one module and yields (node span, operator, replacement) for every mutation point."""

    def __init__(self, path: str, source: bytes, only: frozenset[str], skip: frozenset[str]) -> None:
        self.path, self.source, self.only, self.skip = path, source, only, skip
        self.lines = source.split(b"\n")
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line) + 1)
        self.text_lines = source.decode().split("\n")
        self.found: list[Mutant] = []
        self._scope: tuple[str, ...] = ()

    # spans and text
    def _offset(self, line: int, col: int) -> int:
        return self.starts[line - 1] + col

    def _span(self, node: ast.AST) -> tuple[int, int]:
        return (self._offset(node.lineno, node.col_offset),  # type: ignore[attr-defined]
                self._offset(node.end_lineno, node.end_col_offset))  # type: ignore[attr-defined]

    def _segment(self, node: ast.AST) -> str:
        start, end = self._span(node)
        return self.source[start:end].decode()

    def _add(self, node: ast.AST, operator: str, replacement: str) -> None:
        line = node.lineno  # type: ignore[attr-defined]
        if PRAGMA in self.text_lines[line - 1]:
            return
        start, end = self._span(node)
        if self.source[start:end].decode() == replacement:
            return
        if operator == "delete":  # "pass" says nothing: a deletion is shown (and keyed) by the line it removes
            mutated_line = self.text_lines[line - 1].strip()
            if len(mutated_line) < 25:  # "return None" alone is ambiguous: name the line before it too
                before = next((t.strip() for t in reversed(self.text_lines[: line - 1]) if t.strip()), "")
                mutated_line = f"{before} ⏎ {mutated_line}"
        else:
            mutated_source = self.source[:start] + replacement.encode() + self.source[end:]
            mutated_line = mutated_source.decode().split("\n")[line - 1].strip()
        self.found.append(Mutant(self.path, line, ".".join(self._scope), operator, self.text_lines[line - 1].strip(),
                                 mutated_line, start, end, replacement))

    # walking
    def run(self, tree: ast.Module) -> list[Mutant]:
        for stmt in tree.body:
            self._statement(stmt, scope=(), in_function=False, returns_optional=False)
        return self.found

    def _wanted(self, scope: tuple[str, ...]) -> bool:
        names = {".".join(scope[: i + 1]) for i in range(len(scope))}
        if names & self.skip:
            return False
        return not self.only or bool(names & self.only)

    def _statement(self, stmt: ast.stmt, scope: tuple[str, ...], in_function: bool, returns_optional: bool) -> None:
        if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Assert, ast.Pass, ast.Global, ast.Nonlocal)):
            return
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            optional = stmt.returns is not None and _optional(stmt.returns)
            for index, inner in enumerate(stmt.body):
                if index == 0 and _is_docstring(inner):
                    continue
                self._statement(inner, (*scope, stmt.name), True, optional)
            return
        if isinstance(stmt, ast.ClassDef):
            for index, inner in enumerate(stmt.body):
                if index == 0 and _is_docstring(inner):
                    continue
                self._statement(inner, (*scope, stmt.name), in_function, returns_optional)
            return
        if isinstance(stmt, ast.If) and _type_checking(stmt.test):
            return
        self._scope = scope
        if not in_function:
            names = _assigned_names(stmt)
            if "__all__" in names or (names and not self._wanted((*scope, *sorted(names)[:1]))):
                return
            if not names and not self._wanted(scope):
                return
        elif not self._wanted(scope):
            return
        if (in_function and isinstance(stmt, _DELETABLE) and not _is_docstring(stmt)
                and not self._segment(stmt).startswith("elif")):
            self._add(stmt, "delete", "pass")
        if (isinstance(stmt, ast.Return) and returns_optional and stmt.value is not None
                and not (isinstance(stmt.value, ast.Constant) and stmt.value.value is None)):
            self._add(stmt.value, "return-none", "None")
        for child_name, value in ast.iter_fields(stmt):
            if child_name in ("annotation", "returns", "decorator_list", "type_comment"):
                continue
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, ast.stmt):
                    self._statement(child, scope, in_function, returns_optional)
                elif isinstance(child, ast.AST):
                    self._expression(child)

    def _expression(self, node: ast.AST) -> None:
        if isinstance(node, ast.JoinedStr):  # f-string inner positions are unreliable before Python 3.12
            return
        self._mutate_expression(node)
        for child_name, value in ast.iter_fields(node):
            if child_name == "annotation":
                continue
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, ast.AST):
                    self._expression(child)

    def _mutate_expression(self, node: ast.AST) -> None:
        if isinstance(node, ast.Compare):
            for index, op in enumerate(node.ops):
                swapped = _COMPARE_SWAP.get(type(op))
                if swapped is not None:
                    ops = [*node.ops[:index], swapped(), *node.ops[index + 1:]]
                    self._add(node, "compare", f"({ast.unparse(ast.Compare(node.left, ops, node.comparators))})")
        elif isinstance(node, ast.BoolOp):
            other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            self._add(node, "boolop", f"({ast.unparse(ast.BoolOp(other, node.values))})")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            self._add(node, "not", f"({self._segment(node.operand)})")
        elif isinstance(node, ast.Constant):
            for value in _constant_mutations(node.value):
                self._add(node, "constant", f"({value!r})")
        elif isinstance(node, ast.Call):
            for index, keyword in enumerate(node.keywords):
                if keyword.arg is not None and keyword.arg not in KWARGS_NEVER_DROPPED:
                    keywords = [*node.keywords[:index], *node.keywords[index + 1:]]
                    self._add(node, "drop-kwarg", ast.unparse(ast.Call(node.func, node.args, keywords)))
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)) and _constant_literal(node.elts):
            for index in range(len(node.elts)):
                elts = [*node.elts[:index], *node.elts[index + 1:]]
                smaller = type(node)(elts) if not isinstance(node, ast.Tuple) else ast.Tuple(elts)
                text = ast.unparse(smaller) if elts or not isinstance(node, ast.Set) else "set()"
                self._add(node, "drop-element", f"({text})" if isinstance(node, ast.Tuple) else text)
        elif isinstance(node, ast.Dict) and len(node.keys) >= 2 and _constant_literal(node.keys):
            for index in range(len(node.keys)):
                keys = [*node.keys[:index], *node.keys[index + 1:]]
                values = [*node.values[:index], *node.values[index + 1:]]
                self._add(node, "drop-element", ast.unparse(ast.Dict(keys, values)))


def _constant_mutations(value: object) -> list[object]:
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int) and value in SMALL_INTS:
        return [value + 1, value - 1]
    if isinstance(value, float) and value in (0.0, 1.0):
        return [1.0 - value]
    return []


def _constant_literal(elts: Sequence[ast.expr | None]) -> bool:
    return len(elts) >= 2 and all(isinstance(e, ast.Constant) and not isinstance(e.value, bool) for e in elts)


def _optional(annotation: ast.expr) -> bool:
    """Whether a return annotation is an Optional at its top level (``X | None``, ``Optional[X]``,
    ``Union[X, None]``); ``tuple[bool, float | None]`` is not."""
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):  # a string annotation
        try:
            annotation = ast.parse(annotation.value, mode="eval").body
        except SyntaxError:
            return False
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        return _optional(annotation.left) or _optional(annotation.right)
    if isinstance(annotation, ast.Constant) and annotation.value is None:
        return True
    if isinstance(annotation, ast.Subscript):
        name = ast.unparse(annotation.value).rsplit(".", 1)[-1]
        inner = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
        return name == "Optional" or (name == "Union" and any(_optional(e) for e in inner))
    return False


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _type_checking(test: ast.expr) -> bool:
    return "TYPE_CHECKING" in ast.unparse(test)


def _assigned_names(stmt: ast.stmt) -> set[str]:
    targets: list[ast.expr] = []
    if isinstance(stmt, ast.Assign):
        targets = stmt.targets
    elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
        targets = [stmt.target]
    names = set()
    for target in targets:
        for node in ast.walk(target):
            if isinstance(node, ast.Name):
                names.add(node.id)
    return names


def find_mutants(target: Target, root: Path = REPO) -> list[Mutant]:
    """Every valid mutant of a target (the mutated module compiles and differs from the original)."""
    source = (root / target.path).read_bytes()
    tree = ast.parse(source)
    baseline = ast.dump(tree)
    out, seen = [], set()
    shown: dict[tuple[str, str, str], int] = {}
    for mutant in _Finder(target.path, source, target.only, target.skip).run(tree):
        mutated = mutant.apply(source)
        try:
            dumped = ast.dump(ast.parse(mutated))
        except SyntaxError:
            continue
        if dumped == baseline or dumped in seen:  # no change, or the same change as an earlier operator's
            continue
        seen.add(dumped)
        # the same text twice in one function (two `x = y` lines): the second is shown as "... [2]", so the list
        # of equivalent mutants can name one of them
        key = (mutant.scope, mutant.operator, mutant.mutated)
        shown[key] = shown.get(key, 0) + 1
        if shown[key] > 1:
            mutant.mutated += f"  [{shown[key]}]"
        out.append(mutant)
    return out


# --------------------------------------------------------------------------------------------------- equivalents


def read_equivalents(path: Path = DOCS) -> dict[tuple[str, str, str, str], str]:
    """(file, function, operator, mutated line) -> reason, from the table under "## Equivalent mutants" in
    docs/mutation.md. Keyed by text, not line numbers, so the list survives edits elsewhere in the file."""
    if not path.exists():
        return {}
    out: dict[tuple[str, str, str, str], str] = {}
    section = path.read_text().split("## Equivalent mutants", 1)
    if len(section) < 2:
        return out
    for line in section[1].split("\n## ", 1)[0].splitlines():
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) != 5 or cells[0] in ("file", "") or set(cells[0]) <= {"-", ":"}:
            continue
        file, scope, operator, mutated, reason = (c.strip("`") if i < 4 else c for i, c in enumerate(cells))
        out[(file, "" if scope == "(module)" else scope, operator, mutated)] = reason
    return out


# --------------------------------------------------------------------------------------------------- worker


_PREIMPORT = ("pytest", "_pytest.python", "numpy", "scipy.stats", "PIL.Image", "httpx", "hypothesis", "pydantic",
              "json_repair", "yaml", "sqlite3", "asyncio", "multiprocessing", "urllib.request", "http.server")


def worker(copy: Path) -> None:
    """Serve jobs from stdin (one JSON line each), one forked pytest per job, answers on stdout."""
    import importlib

    for name in _PREIMPORT:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    os.chdir(copy)
    sys.path.insert(0, str(copy))
    sys.dont_write_bytecode = True
    log = copy / ".mutation-child.log"
    for line in sys.stdin:
        job = json.loads(line)
        print(json.dumps(_serve(copy, log, job)), flush=True)


def _serve(copy: Path, log: Path, job: dict) -> dict:
    target = copy / job["path"]
    original = target.read_bytes()
    mutated = base64.b64decode(job["source"])
    _drop_bytecode(target)
    target.write_bytes(mutated)
    args = [*PYTEST_ARGS, *job["tests"], *(f"--deselect={d}" for d in job["deselect"])]
    start = time.monotonic()
    try:
        rc = _fork_pytest(args, log, job["timeout"])
    finally:
        target.write_bytes(original)
        _drop_bytecode(target)
    seconds = time.monotonic() - start
    text = log.read_text(errors="replace") if log.exists() else ""
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", text, re.M)
    return {"rc": rc, "seconds": round(seconds, 2), "killed_by": failed[0] if failed else "", "tail": text[-2000:]}


def _drop_bytecode(module: Path) -> None:
    for pyc in (module.parent / "__pycache__").glob(f"{module.stem}.*.pyc"):
        with contextlib.suppress(OSError):
            pyc.unlink()


def _fork_pytest(args: list[str], log: Path, timeout: float) -> int | None:
    """pytest's exit code in a forked child (None: it ran past the timeout and was killed with its group)."""
    pid = os.fork()
    if pid == 0:  # the child: its own process group, so a timeout also ends the servers a test started
        try:
            os.setpgid(0, 0)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # never the worker's job pipe, whatever a test starts
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            import pytest

            code = int(pytest.main(args))
        except BaseException:  # anything escaping pytest is a crash of the child: report it
            code = 3
        os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        # WNOWAIT: the exited child stays a zombie, so its id (the group's) cannot be reused before the group is
        # ended; only then is it reaped
        exited = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if exited is not None or time.monotonic() > deadline:
            _end_group(pid)
            _, status = os.waitpid(pid, 0)
            return None if exited is None else os.waitstatus_to_exitcode(status)
        time.sleep(0.02)


def _end_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


# --------------------------------------------------------------------------------------------------- coordinator


def _tree_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                         check=True).stdout.decode()
    return [f for f in out.split("\0") if f]


_SITECUSTOMIZE = """\
# Written by scripts/mutation.py into its temporary copy only. tasks/ is rrbench.tasks once installed, and the
# editable install maps it to the repository: here it maps to the copy's tasks/, so that `tasks.x` and
# `rrbench.tasks.x` are the same file (as the registry expects) and both are the copy's.
import importlib.abc
import importlib.util
import sys
from pathlib import Path

_TASKS = Path(__file__).resolve().parent.parent / "tasks"


class _CopyTasks(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "rrbench.tasks":
            return None
        return importlib.util.spec_from_file_location(name, _TASKS / "__init__.py",
                                                      submodule_search_locations=[str(_TASKS)])


sys.meta_path.insert(0, _CopyTasks())
"""


def make_copy(files: Sequence[str], folder: Path) -> Path:
    for rel in files:
        source = REPO / rel
        if not source.is_file():  # deleted in the working tree but still tracked
            continue
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, folder / rel)
    (folder / ".mutation").mkdir()
    (folder / ".mutation" / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    subprocess.run([sys.executable, "-m", "compileall", "-q", "rrbench", "tasks", "tests"], cwd=folder, check=False,
                   capture_output=True)
    return folder


class Worker:
    def __init__(self, copy: Path) -> None:
        entries = [str(copy), str(copy / ".mutation"), os.environ.get("PYTHONPATH", "")]
        path = os.pathsep.join(e for e in entries if e)
        env = {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1",
               "PYTHONHASHSEED": "0"}
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", str(copy)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True, cwd=copy)

    def run(self, job: dict) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError("a mutation worker died")
        return dict(json.loads(answer))

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _job(target: Target, source: bytes, timeout: float, root: Path) -> dict:
    tests = [t for t in target.tests if (root / t.split("::")[0]).exists()]  # killer files may not exist yet
    return {"path": target.path, "source": base64.b64encode(source).decode(), "tests": tests,
            "deselect": list(target.deselect), "timeout": timeout}


def _parallel(workers: Sequence[Worker], jobs: Sequence[dict], done: Callable[[int, dict], None]) -> list[dict]:
    results: list[dict] = [{} for _ in jobs]
    pending: queue.Queue[int] = queue.Queue()
    for index in range(len(jobs)):
        pending.put(index)
    lock = threading.Lock()

    def serve(worker: Worker) -> None:
        while True:
            try:
                index = pending.get_nowait()
            except queue.Empty:
                return
            results[index] = worker.run(jobs[index])
            with lock:
                done(index, results[index])

    threads = [threading.Thread(target=serve, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@dataclass
class ModuleReport:
    target: str
    found: int
    sampled: int
    baseline_s: float
    deselected: list[str] = field(default_factory=list)  # tests that failed on the unmutated tree, left out
    mutants: list[Mutant] = field(default_factory=list)

    def count(self, *statuses: str) -> int:
        return sum(1 for m in self.mutants if m.status in statuses)

    @property
    def rate(self) -> float:
        """Killed (or timed out) of all mutants run, in percent."""
        return 100.0 * self.count("killed", "timeout") / max(1, len(self.mutants))

    @property
    def score(self) -> float:
        """Killed of the mutants not listed as equivalent, in percent (the usual mutation score)."""
        equivalent = sum(1 for m in self.mutants if m.equivalent)
        return 100.0 * self.count("killed", "timeout") / max(1, len(self.mutants) - equivalent)

    @property
    def unexplained(self) -> list[Mutant]:
        return [m for m in self.mutants if m.status in ("survived", "error") and not m.equivalent]


def select_targets(names: Sequence[str], tests: Sequence[str] = (), skip_tests: Sequence[str] = ()) -> list[Target]:
    """The targets named (all by default), with their test lists replaced (``tests``) or filtered (``skip_tests``)."""
    chosen = [] if names else list(TARGETS)
    for name in names:
        found = [t for t in TARGETS if name in t.path]
        if not found:
            raise SystemExit(f"mutation: no target module matches {name!r} (see --list-modules)")
        chosen += [t for t in found if t not in chosen]
    if tests:
        chosen = [replace(t, tests=tuple(tests)) for t in chosen]
    if skip_tests:
        chosen = [replace(t, tests=tuple(x for x in t.tests if not any(fnmatch(x, g) for g in skip_tests)))
                  for t in chosen]
    return chosen


def sample(mutants: list[Mutant], limit: int | None, seed: int, path: str) -> list[Mutant]:
    """At most ``limit`` mutants, drawn with a generator seeded by (seed, module): the same draw every time."""
    if limit is None or len(mutants) <= limit:
        return mutants
    picked = random.Random(f"{seed}:{path}").sample(range(len(mutants)), limit)
    return [mutants[i] for i in sorted(picked)]


def run(args: argparse.Namespace) -> int:
    targets = select_targets(args.module, args.tests, args.skip_tests)
    equivalents = read_equivalents()
    if args.list:
        for target in targets:
            found = find_mutants(target)
            chosen = sample(found, args.max_mutants, args.seed, target.path)
            print(f"{target.path}: {len(found)} mutants, {len(chosen)} sampled")
            for m in chosen:
                print(f"  {_where(m)} {m.operator:12} {m.mutated}")
        return 0
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="rrbench-mutation-"))
    files = _tree_files()
    workers: list[Worker] = []
    try:
        # the tree as it is now, once: mutants are found in the copy, so edits made meanwhile never shift them
        copies = [make_copy(files, tmp / f"copy{i}") for i in range(args.jobs)]
        root = copies[0]
        plan = []
        for target in targets:
            found = find_mutants(target, root)
            plan.append((target, found, sample(found, args.max_mutants, args.seed, target.path)))
        workers = [Worker(c) for c in copies]
        print(f"mutation: {len(targets)} modules, {sum(len(c) for _, _, c in plan)} mutants "
              f"(of {sum(len(f) for _, f, _ in plan)}; at most {args.max_mutants} per module, seed {args.seed}), "
              f"{args.jobs} jobs, copies under {tmp}", flush=True)
        reports = _baselines(workers, plan, args, root)
        jobs, owners = [], []
        for report, (target, _, chosen) in zip(reports, plan, strict=True):
            if report.baseline_s < 0:
                continue
            source = (root / target.path).read_bytes()
            timeout = max(args.min_timeout, args.timeout_factor * report.baseline_s + 10)
            for mutant in chosen:
                job = _job(target, mutant.apply(source), timeout, root)
                job["deselect"] += report.deselected
                jobs.append(job)
                owners.append((report, mutant))
                report.mutants.append(mutant)
        finished = [0]

        def done(index: int, answer: dict) -> None:
            mutant = owners[index][1]
            _classify(mutant, answer, equivalents)
            finished[0] += 1
            if mutant.status != "killed" or args.verbose:
                print(f"  [{finished[0]}/{len(jobs)}] {mutant.status:9} {_where(mutant)} {mutant.operator}: "
                      f"{mutant.mutated}" + (f"  (equivalent: {mutant.equivalent})" if mutant.equivalent else ""),
                      flush=True)
            elif finished[0] % 25 == 0:
                print(f"  [{finished[0]}/{len(jobs)}] ...", flush=True)

        _parallel(workers, jobs, done)
    finally:
        for w in workers:
            w.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    _print_report(reports, time.monotonic() - started, args)
    if args.json:
        Path(args.json).write_text(json.dumps([{**asdict(r), "rate": r.rate} for r in reports], indent=1))
    bad = [r for r in reports if r.baseline_s < 0 or r.score < args.fail_under or r.unexplained]
    return 1 if bad and args.strict else 0


def _baselines(workers: Sequence[Worker], plan: Sequence[tuple[Target, list[Mutant], list[Mutant]]],
               args: argparse.Namespace, root: Path) -> list[ModuleReport]:
    """Run each distinct test list once on the unmutated copy: it must pass, and its time sets the timeout.

    A test that fails on the unmutated tree (someone else's change in progress) cannot tell mutants apart: it is
    left out of that list with a warning, up to three of them; more failures skip the module."""
    jobs: dict[tuple[tuple[str, ...], tuple[str, ...]], dict] = {}
    for target, _, _ in plan:
        job = _job(target, (root / target.path).read_bytes(), args.baseline_timeout, root)
        if job["tests"]:
            jobs.setdefault((tuple(job["tests"]), tuple(job["deselect"])), job)
    keys = list(jobs)
    answers = dict(zip(keys, _parallel(workers, [jobs[k] for k in keys], lambda i, a: None), strict=True))
    for _ in range(3):
        broken = [k for k in keys if answers[k]["rc"] != 0 and answers[k]["killed_by"]]
        if not broken:
            break
        for key in broken:
            failing = answers[key]["killed_by"]
            print(f"mutation: warning: {failing} fails on the unmutated tree; left out of the runs of "
                  f"{', '.join(t.path for t, _, _ in plan if _key(t, root) == key)}", flush=True)
            jobs[key]["deselect"].append(failing)
        retried = _parallel(workers, [jobs[k] for k in broken], lambda i, a: None)
        answers.update(zip(broken, retried, strict=True))
    reports = []
    for target, found, chosen in plan:
        key = _key(target, root)
        answer = answers.get(key)
        ok = answer is not None and answer["rc"] == 0
        reports.append(ModuleReport(target.path, len(found), len(chosen), answer["seconds"] if ok else -1.0,
                                    deselected=list(jobs[key]["deselect"][len(target.deselect):]) if ok else []))
        if answer is None:
            print(f"mutation: {target.path}: no test file to run ({', '.join(target.tests) or 'none left'}); skipped")
        elif not ok:
            print(f"mutation: {target.path}: its tests fail on the unmutated tree (rc {answer['rc']}); skipped\n"
                  f"{answer['tail']}", flush=True)
    return reports


def _key(target: Target, root: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    job = _job(target, b"", 0, root)
    return tuple(job["tests"]), tuple(job["deselect"])


def _classify(mutant: Mutant, answer: dict, equivalents: dict[tuple[str, str, str, str], str]) -> None:
    rc = answer["rc"]
    mutant.seconds = answer["seconds"]
    mutant.killed_by = answer["killed_by"]
    if rc is None:
        mutant.status = "timeout"
    elif rc == 0:
        mutant.status = "survived"
    elif rc in (1, 2) or rc < 0 or rc == 3:
        mutant.status = "killed"  # a failing test, a module that no longer imports, or a crash
    else:
        mutant.status = "error"  # 4: usage error, 5: no tests collected: the mapping is wrong, not the mutant
    if mutant.status == "survived":
        mutant.equivalent = equivalents.get((mutant.path, mutant.scope, mutant.operator, mutant.mutated), "")


def _where(mutant: Mutant) -> str:
    return f"{mutant.path}:{mutant.line} ({mutant.scope or 'module'})"


def _print_report(reports: Sequence[ModuleReport], seconds: float, args: argparse.Namespace) -> None:
    """Per module: mutants found and run, outcomes, the kill rate (killed / run) and the score (killed / run less
    the survivors docs/mutation.md lists as equivalent)."""
    print(f"\n{'module':42} {'found':>5} {'run':>4} {'killed':>6} {'timeout':>7} {'survived':>8} {'equiv':>5} "
          f"{'killed%':>7} {'score%':>6}")
    for r in reports:
        if r.baseline_s < 0:
            print(f"{r.target:42} {r.found:5}    -  not run (see above)")
            continue
        equiv = sum(1 for m in r.mutants if m.equivalent)
        flag = "" if r.score >= args.fail_under and not r.unexplained else "  <"
        print(f"{r.target:42} {r.found:5} {len(r.mutants):4} {r.count('killed'):6} {r.count('timeout'):7} "
              f"{r.count('survived', 'error'):8} {equiv:5} {r.rate:7.1f} {r.score:6.1f}{flag}")
    total = [m for r in reports for m in r.mutants]
    killed = sum(1 for m in total if m.status in ("killed", "timeout"))
    equivalent = sum(1 for m in total if m.equivalent)
    print(f"{'total':42} {sum(r.found for r in reports):5} {len(total):4} {killed:6} {'':7} {'':8} {equivalent:5} "
          f"{100.0 * killed / max(1, len(total)):7.1f} {100.0 * killed / max(1, len(total) - equivalent):6.1f}")
    survivors = [m for r in reports for m in r.mutants if m.status in ("survived", "error")]
    if survivors:
        print("\nsurviving mutants (file:line (function) operator: mutated line; a deletion shows the line removed):")
        for m in survivors:
            note = f"   [equivalent: {m.equivalent}]" if m.equivalent else ("   [error]" if m.status == "error" else "")
            print(f"  {_where(m)} {m.operator}: {m.mutated}{note}")
    left_out = sorted({t for r in reports for t in r.deselected})
    if left_out:
        print("\nleft out because they fail on the unmutated tree (not the mutants' doing):")
        for test in left_out:
            print(f"  {test}")
    unexplained = sum(len(r.unexplained) for r in reports)
    print(f"\nmutation: {seconds:.0f} s, {args.jobs} jobs; at most {args.max_mutants} mutants per module, sampled with "
          f"seed {args.seed}; {unexplained} survivor(s) not listed as equivalent in docs/mutation.md")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--module", action="append", default=[],
                        help="a target module (a substring of its path, e.g. store or metrics/pairs); repeatable")
    parser.add_argument("--tests", action="append", default=[],
                        help="run these test files (or node ids) instead of the modules' own; repeatable")
    parser.add_argument("--skip-tests", action="append", default=[], metavar="GLOB",
                        help="leave out mapped test files matching GLOB, e.g. 'tests/test_mutation_killers*' to see "
                             "what the rest of the suite catches; repeatable")
    parser.add_argument("--max-mutants", type=lambda s: None if s == "all" else int(s), default=40,
                        help="mutants per module, sampled with --seed when there are more (default 40; 'all')")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="parallel workers (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-module sample (default 0)")
    parser.add_argument("--timeout-factor", type=float, default=5.0,
                        help="per-mutant timeout = factor x the module's baseline test time + 10 s (default 5: a "
                             "busy machine must not turn slow survivors into timeouts, which count as killed)")
    parser.add_argument("--min-timeout", type=float, default=30.0, help="lower bound of the per-mutant timeout (s)")
    parser.add_argument("--baseline-timeout", type=float, default=300.0, help=argparse.SUPPRESS)
    parser.add_argument("--fail-under", type=float, default=90.0, help="kill rate each module must reach (%%)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a module is under --fail-under or has an unexplained survivor")
    parser.add_argument("--list", action="store_true", help="list the (sampled) mutants and run nothing")
    parser.add_argument("--list-modules", action="store_true", help="list the target modules and their tests")
    parser.add_argument("--json", help="write every mutant and its outcome to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies")
    parser.add_argument("--verbose", action="store_true", help="print killed mutants too")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(Path(args.worker))
        return 0
    if args.list_modules:
        for t in TARGETS:
            print(f"{t.path}\n    tests: {' '.join(t.tests)}")
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
