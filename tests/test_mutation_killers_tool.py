"""The mutation tool's own logic, without running any mutant (`make mutation` is not run by the test suite).

The mutants of a small module are worked out by hand from the operator list in docs/mutation.md.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent

MODULE = '''"""A docstring: never mutated."""

LIMITS = (1, 2)


def pick(x: int, flag: bool = True) -> int | None:
    """Also never mutated."""
    if x < 2 and not flag:
        return x + 1
    print(x, end="")
    return None
'''


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutation_tool", ROOT / "scripts" / "mutation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutation_tool"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _mutants(tool: ModuleType, tmp_path: Path) -> set[tuple[str, str, str]]:
    (tmp_path / "m.py").write_text(MODULE)
    found = tool.find_mutants(tool.Target("m.py", ()), root=tmp_path)
    return {(m.scope, m.operator, m.mutated) for m in found}


def test_each_operator_on_a_small_module(tool: ModuleType, tmp_path: Path) -> None:
    expected = {
        ("", "drop-element", "LIMITS = ((2,))"),
        ("", "drop-element", "LIMITS = ((1,))"),
        ("", "constant", "LIMITS = ((0), 2)"),
        ("", "constant", "LIMITS = (1, (3))"),
        ("pick", "compare", "if (x <= 2) and not flag:"),
        ("pick", "boolop", "if (x < 2 or not flag):"),
        ("pick", "not", "if x < 2 and (flag):"),
        ("pick", "constant", "if x < (1) and not flag:"),
        ("pick", "constant", "return x + (2)"),
        ("pick", "constant", "return x + (0)"),
        ("pick", "return-none", "return None"),
        # a deletion is shown as the line removed, after the line before it when it is short
        ("pick", "delete", '"""Also never mutated.""" ⏎ if x < 2 and not flag:'),
        ("pick", "delete", "if x < 2 and not flag: ⏎ return x + 1"),
        ("pick", "delete", 'return x + 1 ⏎ print(x, end="")'),
        ("pick", "drop-kwarg", "print(x)"),
    }
    found = _mutants(tool, tmp_path)
    assert expected <= found
    # docstrings and signatures (the annotation's None, the default True) are left alone; `return None` is
    # already None, so only `return x + 1` has a return-none mutant
    assert not any("A docstring" in m for _, _, m in found)
    assert not any("def pick" in m for _, _, m in found)
    assert [m for _, op, m in found if op == "return-none"] == ["return None"]


def test_sampling_is_seeded_per_module(tool: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(MODULE)
    found = tool.find_mutants(tool.Target("m.py", ()), root=tmp_path)
    first = tool.sample(found, 5, 0, "m.py")
    assert len(first) == 5 and first == tool.sample(found, 5, 0, "m.py")
    assert [m.line for m in first] == sorted(m.line for m in first)  # kept in file order
    assert tool.sample(found, None, 0, "m.py") == found
    draws = {tuple(id(m) for m in tool.sample(found, 5, seed, "m.py")) for seed in range(6)}
    assert len(draws) > 1


def test_the_equivalent_list_in_the_docs_is_read(tool: ModuleType) -> None:
    listed = tool.read_equivalents()
    assert len(listed) >= 20
    key = ("rrbench/metrics/_bootstrap.py", "clopper_pearson", "drop-kwarg",
           "ci = stats.binomtest(int(whole), n).proportion_ci(confidence_level=level)")
    assert listed[key] == "scipy's default method of proportion_ci is 'exact'"
    assert all(path.startswith(("rrbench/", "tasks/")) and op in tool.OPERATORS for path, _, op, _ in listed)


def test_every_target_names_existing_tests_and_modules(tool: ModuleType) -> None:
    for target in tool.TARGETS:
        assert (ROOT / target.path).is_file(), target.path
        assert all((ROOT / t.split("::")[0]).is_file() for t in target.tests), target.path
