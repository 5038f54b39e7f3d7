from __future__ import annotations

import io

import pytest

from rrbench import registry
from rrbench.progress import Progress
from rrbench.types import UserError


def test_missing_optional_dependency_names_the_extra() -> None:
    with pytest.raises(UserError, match=r"pip install 'rrbench\[api\]'"):
        registry.require("surely_not_installed_module_xyz", "api")
    assert registry.require("json", "api").dumps([1]) == "[1]"


def test_plain_progress_lines_carry_done_failed_rate_and_eta() -> None:
    stream = io.StringIO()  # not a TTY: periodic plain lines, no carriage returns
    progress = Progress(10, "sanity x random", already=2, stream=stream, interval=0.0)
    for i in range(4):
        progress.update(failed=i == 1)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5 and "\r" not in stream.getvalue()
    assert lines[-1].startswith("sanity x random  6/10") and "failed 1" in lines[-1]
    assert "/s" in lines[-1] and "ETA" in lines[-1]


def test_unknown_names_suggest_close_matches() -> None:
    with pytest.raises(UserError, match="did you mean classical-iqa"):
        registry.get("model", "classical-iq")
