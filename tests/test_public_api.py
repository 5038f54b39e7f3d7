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
