"""`rrbench doctor`: what this machine can run, and for one model what is missing and how to fix it.

Every check is a line: ok, warn (works, but not as well as it could) or FAIL (the run would fail), with the
fix. Nothing is downloaded and no API key value is ever printed: only whether its variable is set.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rrbench import __version__

# extra -> the modules it provides (the first one decides whether the extra counts as installed)
EXTRAS = {
    "api": ("httpx",),
    "transformers": ("transformers", "torch", "accelerate", "huggingface_hub"),
    "vllm": ("vllm",),
    "diffusers": ("diffusers",),
    "datasets": ("datasets", "pyarrow"),
    "train": ("trl", "peft"),
    "ray": ("ray",),
    "lm-eval": ("lm_eval",),
    "plots": ("matplotlib",),
}


@dataclass(frozen=True)
class Check:
    status: str  # "ok", "warn" or "FAIL"
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        fix = f"  -> {self.fix}" if self.fix and self.status != "ok" else ""
        return f"  {self.status:<4}  {self.name:<22} {self.detail}{fix}"


def _version(module: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return None
    dist = {"huggingface_hub": "huggingface-hub", "lm_eval": "lm-eval"}.get(module, module)
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "installed"


def environment_checks() -> Iterator[Check]:
    yield Check("ok", "rrbench", f"{__version__} on Python {platform.python_version()} ({sys.executable})")
    for extra, modules in EXTRAS.items():
        versions = {m: _version(m) for m in modules}
        missing = [m for m, v in versions.items() if v is None]
        shown = ", ".join(f"{m} {v}" for m, v in versions.items() if v)
        if not missing:
            yield Check("ok", f"extra [{extra}]", shown)
        elif extra == "vllm" and os.environ.get("RRBENCH_VLLM_PYTHON"):
            yield Check("ok", f"extra [{extra}]", f"in its own venv: {os.environ['RRBENCH_VLLM_PYTHON']}")
        else:
            yield Check("warn", f"extra [{extra}]", f"missing {', '.join(missing)}", f"pip install 'rrbench[{extra}]'")
    yield gpu_check()
    yield writable_check("response cache", _cache_dir())
    yield writable_check("runs folder", Path("runs"))


def gpu_check() -> Check:
    if importlib.util.find_spec("torch") is None:
        return Check("warn", "GPU", "torch is not installed, so no GPU can be used",
                     "pip install 'rrbench[transformers]'")
    import torch

    if not torch.cuda.is_available():
        return Check("warn", "GPU", f"none visible to torch {torch.__version__}; in-process models run on the CPU",
                     "fine for tests and small models; use a GPU machine or --base-url for 8B judges")
    names = [f"{torch.cuda.get_device_name(i)} ({torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB)"
             for i in range(torch.cuda.device_count())]
    return Check("ok", "GPU", f"{len(names)}: " + "; ".join(names))


def _cache_dir() -> Path:
    from rrbench.store import default_cache_path

    return default_cache_path().parent


def writable_check(name: str, folder: Path) -> Check:
    probe = folder if folder.exists() else next((p for p in folder.parents if p.exists()), Path("/"))
    if os.access(probe, os.W_OK):
        return Check("ok", name, f"{folder} is writable")
    return Check("FAIL", name, f"{folder} is not writable", "choose another folder (--output, --cache)")


def model_checks(model: Any) -> Iterator[Check]:
    """What one built model needs: its own ``checks()`` when it has them (VLM judges do)."""
    checks = getattr(model, "checks", None)
    if checks is None:
        yield Check("ok", f"model {model.name}", "needs nothing beyond its extra")
        return
    yield from checks()


def reachable(url: str, api_key_env: str | None, timeout: float = 5.0) -> tuple[bool, str]:
    """GET {url}/models: a live OpenAI-compatible server answers with the models it serves."""
    request = urllib.request.Request(f"{url.rstrip('/')}/models")
    key = os.environ.get(api_key_env) if api_key_env else None
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            served = [m.get("id") for m in json.loads(response.read()).get("data", [])]
            return True, "serves " + (", ".join(str(s) for s in served[:5]) or "no models")
    except urllib.error.HTTPError as exc:
        return exc.code in (401, 403, 404), f"answered HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return False, f"unreachable ({type(exc).__name__}: {getattr(exc, 'reason', exc)})"
