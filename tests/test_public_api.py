"""The public API: what plug-ins and training/ import, and the boundary that rrbench never imports training/."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageFilter
from skimage import data as skdata

import rrbench

REPO = Path(__file__).resolve().parent.parent


def test_every_public_name_resolves_without_heavy_imports() -> None:
    code = ("import sys, rrbench\n"
            "names = [getattr(rrbench, n) for n in rrbench.__all__]\n"
            "print(len(names), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(len(rrbench.__all__)), "False"]
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        rrbench.nothing  # noqa: B018


def test_rrbench_never_imports_training() -> None:
    offenders = []
    for path in (REPO / "rrbench").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] == "training"]
    assert offenders == []
    # and at run time: every plug-in and command module loaded, no module of training/ in the process
    code = ("import sys, pkgutil, importlib, rrbench\n"
            "from rrbench import registry\n"
            "registry.load_plugins()\n"
            "for m in pkgutil.walk_packages(rrbench.__path__, 'rrbench.'):\n"
            "    if 'vllm' not in m.name: importlib.import_module(m.name)\n"
            "print(sorted(n for n in sys.modules if n.split('.')[0] == 'training'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_training_imports_only_the_public_api() -> None:
    """training/ reaches rrbench through ``import rrbench`` / ``from rrbench import name`` only: a private module
    (rrbench.hubaccess, rrbench.spec, ...) is free to change under it."""
    offenders = []
    for path in (REPO / "training").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            offenders += [f"{path.relative_to(REPO)}:{node.lineno}: {n}" for n in names if n.startswith("rrbench.")]
    assert offenders == []


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_reward_function_scores_images_as_the_model_does() -> None:
    sharp = Image.fromarray(skdata.astronaut())
    blurred = sharp.filter(ImageFilter.GaussianBlur(6))
    with rrbench.RewardFunction("classical-iqa") as reward:
        scores = reward(["an astronaut", "an astronaut"], [sharp, _png(blurred)])
        model = reward.model
        direct = model.score([rrbench.Query("an astronaut", (rrbench.Media.from_bytes(_png(sharp)),))])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)
    assert scores[0] == direct[0].scores[0]  # the adapter adds nothing to the model's own number
    assert scores[0] != scores[1]
    with pytest.raises(ValueError, match="2 prompts for 1 images"):
        rrbench.RewardFunction("classical-iqa")(["a", "b"], [sharp])


def test_a_model_that_cannot_score_single_images_is_no_reward() -> None:
    with pytest.raises(rrbench.UserError, match="cannot score single images"):
        rrbench.RewardFunction("always-first")


def test_a_reward_whose_server_is_not_there_is_one_error_and_leaves_nothing_open() -> None:
    """The critic's reachability check fails in RewardFunction's start: the HTTP session the start opened is closed
    (else aiohttp prints "Unclosed client session" at exit, under the one line the user should see)."""
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = ("import gc, rrbench\n"
            "try:\n"
            f"    rrbench.RewardFunction('rationalrewards-8b', base_urls=['http://127.0.0.1:{port}/v1'])\n"
            "except rrbench.UserError as exc:\n"
            "    print(exc)\n"
            "gc.collect()\n")
    done = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and f"cannot reach http://127.0.0.1:{port}/v1" in done.stdout, done
    assert "Unclosed" not in done.stderr and "ResourceWarning" not in done.stderr, done.stderr
