"""`rrbench doctor`: environment lines, and per model the engine, weights, server and API key with their fixes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import rrbench
from tests.test_task_genai_bench import ROWS, T2I_IMAGES, t2i_columns, write_parquet


def _lines(text: str, name: str) -> list[str]:
    """The check lines named ``name``: "<status>  <name>  <detail>  -> <fix>"."""
    return [ln.strip() for ln in text.splitlines() if ln.split(maxsplit=1)[1:2] and
            ln.split(maxsplit=1)[1].startswith(name)]


def test_environment_report_names_each_extra_with_its_install_command(tmp_path: Path, cli_env: dict[str, str]) -> None:
    done = rrbench("doctor", env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (api,) = _lines(done.stdout, "extra [api]")
    assert api.startswith("ok") and "aiohttp" in api  # the test extra installs it
    for extra in ("transformers", "vllm", "diffusers", "datasets", "plots"):
        (line,) = _lines(done.stdout, f"extra [{extra}]")
        assert line.startswith("ok") or f"pip install 'rrbench[{extra}]'" in line
    assert _lines(done.stdout, "GPU") and "0 problem(s)" in done.stdout


def test_missing_weights_fail_with_the_fetch_command(tmp_path: Path, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "HF_HOME": str(tmp_path / "empty-hf-home"), "HF_HUB_OFFLINE": "1"}
    done = rrbench("doctor", "--model", "rationalrewards-8b", "-M", "engine=transformers", env=env, cwd=tmp_path)
    assert done.returncode == 1
    (t2i,) = _lines(done.stdout, "weights (t2i)")
    (edit,) = _lines(done.stdout, "weights (edit)")
    assert t2i.startswith("FAIL") and "hf download TIGER-Lab/RationalRewards-8B-T2I" in t2i
    assert edit.startswith("FAIL") and "hf download TIGER-Lab/RationalRewards-8B-Edit" in edit


def test_local_weights_are_found(tmp_path: Path, cli_env: dict[str, str], tiny_vlm: Path) -> None:
    done = rrbench("doctor", "--model", "qwen3-vl-8b", "-M", f"path={tiny_vlm}", "-M", "engine=transformers",
                   env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    assert _lines(done.stdout, "weights (t2i)")[0].startswith("ok") and str(tiny_vlm) in done.stdout


def test_server_and_key_are_checked_and_the_key_never_shown(
    tmp_path: Path, cli_env: dict[str, str], vlm_server: str
) -> None:
    secret = "sk-doctor-test-0123456789"
    env = {**cli_env, "MY_KEY": secret}
    live = rrbench("doctor", "--model", "gpt-4o", "--base-url", vlm_server, "--api-key-env", "MY_KEY",
                   env=env, cwd=tmp_path)
    assert live.returncode == 0, live.stdout
    assert _lines(live.stdout, "API key")[0].startswith("ok") and "$MY_KEY is set" in live.stdout
    assert _lines(live.stdout, "server")[0].startswith("ok")
    dead = rrbench("doctor", "--model", "gpt-4o", "--base-url", "http://127.0.0.1:9/v1", "--api-key-env", "NO_KEY",
                   env=env, cwd=tmp_path)
    assert dead.returncode == 1
    assert _lines(dead.stdout, "API key")[0].startswith("FAIL") and "export NO_KEY=" in dead.stdout
    assert "unreachable" in _lines(dead.stdout, "server")[0]
    assert secret not in live.stdout + live.stderr + dead.stdout + dead.stderr


# ------------------------------------------------------------------------------------------------ one model, one task


@pytest.fixture
def env(cli_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """An empty Hugging Face cache, offline: whatever doctor finds is on disk where the test put it."""
    return {**cli_env, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1"}


def _check(stdout: str, name: str) -> str:
    """The one check line named ``name``."""
    lines = [ln.strip() for ln in stdout.splitlines() if re.match(rf"\s+(ok|warn|FAIL)\s+{re.escape(name)}\s", ln)]
    assert len(lines) == 1, (name, stdout)
    return lines[0]


def _genai_copy(folder: Path, columns: dict[str, list[object]]) -> Path:
    write_parquet(folder / "image_generation" / "test_v1-00000-of-00001.parquet", columns, T2I_IMAGES)
    return folder


@pytest.mark.parametrize(("model", "missing"), [
    ("clipscore", "has no config.json, no model.safetensors or pytorch_model.bin, no tokenizer.json or vocab.json"),
    ("pickscore", "has no config.json, no model.safetensors or pytorch_model.bin"),
    ("hpsv2", "has no HPS_v2_compressed.pt (fetch it with `hf download xswu/HPSv2 HPS_v2_compressed.pt`)"),
    ("hpsv2.1", "has no HPS_v2.1_compressed.pt"),
    ("imagereward", "has no ImageReward.pt, no med_config.json (fetch it with `hf download THUDM/ImageReward`)"),
    ("laion-aesthetic", "has no sac+logos+ava1-l14-linearMSE.pth (fetch it with `curl -LO"),
    ("hpsv3", "has no HPSv3.safetensors (fetch it with `hf download MizzenAI/HPSv3`)"),
    ("editreward", "has no model.safetensors or model.pth"),
    ("qwen3-vl-8b", "has no config.json, no model.safetensors or model.safetensors.index.json"),
])
def test_doctor_fails_a_model_whose_folder_is_empty(model: str, missing: str, tmp_path: Path,
                                                    env: dict[str, str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    extra = ["-M", "engine=transformers"] if model == "qwen3-vl-8b" else []
    done = rrbench("doctor", "--model", model, "-M", f"path={empty}", *extra, env=env, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    fails = [ln for ln in done.stdout.splitlines() if ln.strip().startswith("FAIL")]
    assert any(f"{empty} {missing}" in ln for ln in fails), done.stdout
    assert re.search(r"^[1-9] problem\(s\) that would stop a run", done.stdout, re.M)


def test_doctor_passes_the_files_a_model_loads_and_names_them(tmp_path: Path, env: dict[str, str]) -> None:
    folder = tmp_path / "hps"
    folder.mkdir()
    (folder / "HPS_v2.1_compressed.pt").write_bytes(b"\0")
    (folder / "tokenizer.json").write_text("{}")  # the checkpoint folder's own tokenizer is the one loaded
    done = rrbench("doctor", "--model", "hpsv2.1", "-M", f"path={folder}", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    assert _check(done.stdout, "checkpoint").endswith(str(folder / "HPS_v2.1_compressed.pt"))
    assert _check(done.stdout, "tokenizer").startswith("ok") and str(folder) in _check(done.stdout, "tokenizer")
    assert "0 problem(s)" in done.stdout


def test_doctor_says_only_what_the_model_and_task_need(tmp_path: Path, env: dict[str, str]) -> None:
    done = rrbench("doctor", "--model", "classical-iqa", "--task", "sanity", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    assert "extra [" not in done.stdout and "GPU" not in done.stdout  # numpy only: no extra, no GPU
    assert _check(done.stdout, "data").startswith("ok") and "192 samples" in done.stdout
    assert "0 problem(s) that would stop a run, 0 warning(s)" in done.stdout
    scalar = rrbench("doctor", "--model", "pickscore", env=env, cwd=tmp_path)
    assert _check(scalar.stdout, "extra [transformers]").startswith("ok")
    assert "extra [vllm]" not in scalar.stdout and "extra [diffusers]" not in scalar.stdout
    machine = rrbench("doctor", env=env, cwd=tmp_path)  # no model, no task: the whole machine, as before
    assert machine.returncode == 0 and _check(machine.stdout, "extra [vllm]")


def test_doctor_checks_the_data_a_run_would_read(tmp_path: Path, env: dict[str, str]) -> None:
    copy = _genai_copy(tmp_path / "genai", t2i_columns(ROWS[:4]))
    good = rrbench("doctor", "--task", "genai-bench-t2i", "--data", str(copy), env=env, cwd=tmp_path)
    assert good.returncode == 0 and f"--data {copy}: 4 samples" in _check(good.stdout, "data"), good.stdout
    wrong = t2i_columns(ROWS[:4])
    wrong.pop("vote_type")
    _genai_copy(tmp_path / "wrong", wrong)
    bad = rrbench("doctor", "--task", "genai-bench-t2i", "--data", str(tmp_path / "wrong"), env=env, cwd=tmp_path)
    assert bad.returncode == 1 and "column 'vote_type' missing" in _check(bad.stdout, "data")
    hub = rrbench("doctor", "--task", "genai-bench-t2i", env=env, cwd=tmp_path)
    line = _check(hub.stdout, "data")
    assert hub.returncode == 1 and line.startswith("FAIL") and "HF_HUB_OFFLINE is set" in line
    assert "hf download TIGER-Lab/GenAI-Bench --repo-type dataset" in line


def test_doctor_usage_errors_exit_2_and_the_codes_are_in_help(tmp_path: Path, env: dict[str, str]) -> None:
    for args, message in ((("--model", "nope"), "unknown model 'nope'"), (("--task", "nope"), "unknown task 'nope'"),
                          (("-M", "path=x"), "-M, -G, -T and --data need --model, --generator or --task")):
        done = rrbench("doctor", *args, env=env, cwd=tmp_path)
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    helped = rrbench("doctor", "--help", env=env, cwd=tmp_path)
    assert "exit codes: 0 nothing would stop a run" in helped.stdout and "1 at least one FAIL" in helped.stdout
