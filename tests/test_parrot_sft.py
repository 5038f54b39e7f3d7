"""PARROT 3: build-sft, import-sft and sft of a tiny random Qwen3-VL student, on CPU.

Data are hand-written stage directories (``tests/fixtures/sft_data.py``) with scikit-image photographs and critiques
in the RationalRewards format. The SFT runs are the real command (``python -m rrbench_train.cli``, and through
``accelerate launch`` with two gloo processes); the checkpoint is loaded by the real ``rrbench run``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from rrbench import Media, critique
from rrbench_train import cli
from tests.conftest import rrbench
from tests.fixtures.sft_data import PHOTOS, photo_png, random_critique, write_stages

ACCELERATE_CONFIGS = Path(__file__).parent.parent / "training" / "parrot" / "configs" / "accelerate"
TINY_RECIPE = {  # the tiny student on 2 CPU cores: no warmup or decay, no gradient checkpointing, no workers
    "learning_rate": 2e-3, "lr_scheduler_type": "constant", "warmup_fraction": 0.0, "weight_decay": 0.0,
    "num_train_epochs": 1, "max_steps": 2, "effective_batch_size": 1, "per_device_train_batch_size": 1,
    "image_max_pixels": None, "gradient_checkpointing": False, "save_steps": 2, "logging_steps": 1,
    "dataloader_num_workers": 0, "seed": 0,
}


def _train_cli(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rrbench_train.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env or _env())


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def _config(tmp: Path, **changes: Any) -> Path:
    path = tmp / f"recipe-{len(list(tmp.glob('recipe-*')))}.yaml"
    path.write_text(yaml.safe_dump({**TINY_RECIPE, **changes}))
    return path


def _build(tmp: Path, n: int, kinds: tuple[tuple[str, str], ...] | None = None, **kw: Any) -> Path:
    _, filt = write_stages(tmp / "stages", n, kinds=kinds, **kw)
    assert cli.main(["build-sft", "--from", str(filt)]) == 0
    (built,) = (tmp / "stages").glob("build-sft__*")
    return built


def _rows(dataset_dir: Path) -> list[dict[str, Any]]:
    import datasets

    data = datasets.load_from_disk(str(dataset_dir))
    data = data.cast_column("images", datasets.List(datasets.Image(decode=False)))
    return [dict(r) for r in data]


def _stage(path: Path) -> dict[str, Any]:
    return dict(json.loads((path / "stage.json").read_text()))


# ------------------------------------------------------------------------------------------------ build-sft


def test_build_sft_places_images_as_the_critic_prompt_does_and_round_trips(tmp_path: Path) -> None:
    bad = [
        {"id": "escape", "kind": "pairwise", "generation": "t2i", "prompt": "p", "answer": "x", "kept": True,
         "images": {"candidates": ["../../../../etc/hostname", "images/0000-candidates-coffee.png"]}},
        {"id": "failed", "kind": "pairwise", "generation": "t2i", "prompt": "p", "failure": "parse", "kept": True},
        {"id": "renamed", "kind": "pointwise", "generation": "t2i", "prompt": "p", "answer": "x", "kept": True,
         "student_prompt": "rationalrewards/pointwise-t2i@other-9", "images": {"candidates": ["a.png"]}},
    ]
    built = _build(tmp_path, 10, extra=bad)
    counts = _stage(built)["counts"]
    # 10 records, every fifth (ids 4 and 9) not kept; 3 bad ones: no answer, a path outside, a changed prompt
    assert counts["records"] == 13 and counts["rows"] == 8
    assert counts["skipped"] == {"not kept by the filter": 2, "no answer": 1}
    assert sum(counts["faults"].values()) == 2 and counts["sharegpt"] == {"rows": 8, "faults": 0}
    assert counts["by_kind"] == {"pairwise/edit": 2, "pairwise/t2i": 2, "pointwise/edit": 2, "pointwise/t2i": 2}
    records = {r["id"]: r for r in map(json.loads, (built / "records.jsonl").read_text().splitlines())}
    assert records["escape"]["status"] == "fault" and records["r0004"]["reason"] == "not kept by the filter"

    anchor = next((tmp_path / "stages").glob("anchor__*"))
    rows = {r["id"]: r for r in _rows(built / "dataset")}
    for row in rows.values():
        source = json.loads(next(line for line in (anchor / "records.jsonl").read_text().splitlines()
                                 if json.loads(line)["id"] == row["id"]))
        files = [anchor / p for p in source["images"]["source"] + source["images"]["candidates"]]
        media = [Media.from_path(f) for f in files]
        expected = critique.critic_messages(source["prompt"], media[len(source["images"]["source"]):],
                                            media[:len(source["images"]["source"])], kind=source["kind"],
                                            generation=source["generation"])
        # the same messages, each image block where the critic prompt has its image, the bytes in that order
        assert [m["role"] for m in row["prompt"]] == [m["role"] for m in expected]
        for got, want in zip(row["prompt"], expected, strict=True):
            parts = [{"type": "text", "text": want["content"]}] if isinstance(want["content"], str) else want["content"]
            assert [(b["type"], b["text"]) for b in got["content"]] == [
                (p["type"], p.get("text")) for p in parts if p["type"] == "image" or p["text"]]
        assert [i["bytes"] for i in row["images"]] == [f.read_bytes() for f in files]
        assert row["completion"] == [{"role": "assistant", "content": [{"type": "text", "text": source["answer"]}]}]
    # hand-checked shapes: pairwise edit = source, A, B in the user turn; pointwise has a system turn
    user = rows["r0002"]["prompt"][0]["content"]
    assert [b["type"] for b in user] == ["text", "image", "text", "image", "text", "image", "text"]
    assert [m["role"] for m in rows["r0001"]["prompt"]] == ["system", "user"]

    # the ShareGPT export reads back through import-sft as the same dataset
    shared = json.loads((built / "sharegpt" / "rationalrewards_sft.json").read_text())
    assert shared[0]["messages"][0]["content"].count("<image>") == 2 and len(shared[0]["images"]) == 2
    assert cli.main(["import-sft", "--data", str(built / "sharegpt"), "--out", str(tmp_path / "imported")]) == 0
    (imported,) = (tmp_path / "imported").glob("import-sft__*")
    again = {r["id"]: r for r in _rows(imported / "dataset")}
    assert sorted(again) == sorted(rows)
    for key, row in rows.items():
        assert again[key]["prompt"] == row["prompt"] and again[key]["completion"] == row["completion"]
        assert [i["bytes"] for i in again[key]["images"]] == [i["bytes"] for i in row["images"]]


def test_build_sft_can_drop_the_system_turn(tmp_path: Path) -> None:
    _, filt = write_stages(tmp_path, 2, kinds=(("pointwise", "t2i"),))
    assert cli.main(["build-sft", "--from", str(filt), "--system", "drop", "--out", str(tmp_path / "o")]) == 0
    (built,) = (tmp_path / "o").glob("build-sft__*")
    assert [[m["role"] for m in r["prompt"]] for r in _rows(built / "dataset")] == [["user"], ["user"]]


# ------------------------------------------------------------------------------------------------ import-sft


def test_import_sft_reads_the_released_layout_and_counts_faults(tmp_path: Path, capsys: Any) -> None:
    data = tmp_path / "RationalRewards-SFTData"
    (data / "imgs").mkdir(parents=True)
    for name in PHOTOS[:3]:
        (data / "imgs" / f"{name}.png").write_bytes(photo_png(name))
    (tmp_path / "outside.png").write_bytes(photo_png("rocket"))
    answer = random_critique(random.Random(1), "pairwise", "t2i")
    good = {"messages": [{"role": "system", "content": "You judge images."},
                         {"role": "user", "content": "Compare <image> and <image>."},
                         {"role": "assistant", "content": answer}],
            "images": ["imgs/astronaut.png", "imgs/coffee.png"]}
    rows = [
        good,
        {**good, "images": ["imgs/astronaut.png"]},  # 2 markers, 1 image
        {**good, "images": ["imgs/astronaut.png", "../outside.png"]},  # leaves the data folder
        {**good, "images": ["imgs/astronaut.png", str(tmp_path / "outside.png")]},  # absolute, outside
        {**good, "messages": good["messages"][:2]},  # no assistant turn
        {"messages": [{"role": "user", "content": "<image>edit: make it grey"},
                      {"role": "assistant", "content": "ok"}], "images": ["imgs/chelsea.png"]},
    ]
    (data / "edit_pairwise.json").write_text(json.dumps(rows))
    assert cli.main(["import-sft", "--data", str(data), "--out", str(tmp_path / "out")]) == 0
    (stage,) = (tmp_path / "out").glob("import-sft__*")
    counts = _stage(stage)["counts"]
    assert counts["rows_read"] == 6 and counts["rows"] == 2
    assert counts["faults"] == {"image count mismatch": 1, "unreadable image": 2, "no final assistant turn": 1}
    first, last = _rows(stage / "dataset")
    assert first["id"] == "edit_pairwise.json:0" and last["id"] == "edit_pairwise.json:5"
    assert first["prompt"] == [
        {"role": "system", "content": [{"type": "text", "text": "You judge images."}]},
        {"role": "user", "content": [{"type": "text", "text": "Compare "}, {"type": "image", "text": None},
                                     {"type": "text", "text": " and "}, {"type": "image", "text": None},
                                     {"type": "text", "text": "."}]}]
    assert first["completion"][0]["content"][0]["text"] == answer
    assert [i["bytes"] for i in first["images"]] == [photo_png("astronaut"), photo_png("coffee")]
    image, text = {"type": "image", "text": None}, {"type": "text", "text": "edit: make it grey"}
    assert last["prompt"][0]["content"] == [image, text]
    # nothing usable at all is one line and exit 2
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.json").write_text(json.dumps([rows[1]]))
    assert cli.main(["import-sft", "--data", str(tmp_path / "empty" / "x.json"), "--out", str(tmp_path / "o2")]) == 2
    assert "no usable row" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ bad input, configs


def test_sft_refuses_bad_configs_and_datasets_in_one_line(tmp_path: Path, capsys: Any, tiny_vlm: Path) -> None:
    import datasets

    built = _build(tmp_path, 2, kinds=(("pairwise", "t2i"),))
    cases = {
        "max_length=2048 would truncate image tokens": [
            "--data", str(built), "--config", str(_config(tmp_path, max_length=2048))],
        "unknown key(s) in": ["--data", str(built), "--config", str(_config(tmp_path, packing=True))],
        "no saved dataset at": ["--data", str(tmp_path / "nowhere")],
    }
    no_images = tmp_path / "no-images"
    datasets.Dataset.from_list([{"prompt": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                                 "completion": [{"role": "assistant", "content": [{"type": "text", "text": "x"}]}]}]
                               ).save_to_disk(str(no_images))
    cases["has no images column"] = ["--data", str(no_images)]
    empty = tmp_path / "empty-images"
    row = _rows(built / "dataset")[0]
    datasets.Dataset.from_list([{**row, "images": []}]).save_to_disk(str(empty))
    cases["1 of 1 rows have no images"] = ["--data", str(empty)]
    for message, args in cases.items():
        capsys.readouterr()  # the progress bars of the set-up above
        assert cli.main(["sft", "--model", str(tiny_vlm), "--output-dir", str(tmp_path / "ck"), *args]) == 2, message
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "ck").exists()  # refused before anything was written


def test_shipped_configs_parse() -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    from rrbench_train.parrot.sft import Recipe, load_recipe

    assert load_recipe("sft-paper.yaml", {}) == Recipe()  # the yaml spells out the dataclass defaults
    kinds = {p.stem: load_config_from_file(str(p)).distributed_type for p in ACCELERATE_CONFIGS.glob("*.yaml")}
    assert {k: str(v).rsplit(".", 1)[-1] for k, v in kinds.items()} == {
        "single_gpu": "NO", "ddp": "MULTI_GPU", "deepspeed_zero3": "DEEPSPEED", "fsdp2": "FSDP"}


# ------------------------------------------------------------------------------------------------ sft runs


@pytest.mark.slow
def test_sft_checkpoint_loads_in_rrbench_and_a_broken_one_is_one_line(
    tmp_path: Path, tiny_vlm: Path, cli_env: dict[str, str]
) -> None:
    built = _build(tmp_path, 3, kinds=(("pairwise", "t2i"),))
    ckpt = tmp_path / "ckpt"
    done = _train_cli("sft", "--data", str(built), "--model", str(tiny_vlm), "--config", str(_config(tmp_path)),
                      "--output-dir", str(ckpt))
    assert done.returncode == 0, done.stderr[-3000:]
    record = _stage(ckpt)
    assert record["status"] == "done" and record["checkpoint_missing"] == []
    assert record["counts"]["global_step"] == 2 and record["counts"]["batches_checked"] == 2
    assert record["counts"]["frozen_parameters"] > 0 and record["inputs"]["dataset"] == str(built / "dataset")
    assert record["config"]["max_length"] is None and record["code"]["rrbench"]
    run = rrbench("run", "--task", "sanity", "-T", "n=2", "-T", "size=64", "--model", "rationalrewards-8b",
                  "-M", f"path={ckpt}", "-M", "engine=transformers", "-M", "max_tokens=16", "--quiet",
                  "--output", str(tmp_path / "runs"), env=cli_env, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["counts"]["recorded"] == 2
    broken = tmp_path / "broken"
    shutil.copytree(ckpt, broken, ignore=shutil.ignore_patterns("checkpoint-*", "model.safetensors"))
    run = rrbench("run", "--task", "sanity", "-T", "n=2", "--model", "rationalrewards-8b", "-M", f"path={broken}",
                  "-M", "engine=transformers", "--output", str(tmp_path / "runs2"), env=cli_env, cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "has no model.safetensors" in run.stderr


@pytest.mark.slow
def two_process_sft(data: Path, model: Path, config: Path, out: Path) -> list[str]:
    """``accelerate launch`` of ``rrbench-train sft`` on two processes: --multi_gpu starts torchrun; without a GPU,
    sft joins the two in a gloo group."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
            str(_free_port()), "-m", "rrbench_train.cli", "sft", "--data", str(data), "--model", str(model),
            "--config", str(config), "--output-dir", str(out)]


def test_sft_two_cpu_processes_through_accelerate(tmp_path: Path, tiny_vlm: Path) -> None:
    built = _build(tmp_path, 4, kinds=(("pairwise", "t2i"),))
    ckpt = tmp_path / "ckpt"
    launch = two_process_sft(built, tiny_vlm, _config(tmp_path, effective_batch_size=2), ckpt)
    done = subprocess.run(launch, capture_output=True, text=True, timeout=300, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    counts = _stage(ckpt)["counts"]
    # effective batch 2 over 2 processes of 1: no accumulation; 2 steps of 2 rows
    assert counts["world_size"] == 2 and counts["gradient_accumulation_steps"] == 1
    assert counts["effective_batch_size"] == 2 and counts["global_step"] == 2
    assert (ckpt / "model.safetensors").is_file()
    # 2 steps x 2 processes x 1 row = the 4 rows once: really one data-parallel group, not two separate runs
    assert json.loads((ckpt / "checkpoint-2" / "trainer_state.json").read_text())["epoch"] == 1.0


@pytest.mark.slow
def test_sft_resumes_from_the_last_checkpoint_after_sigkill(tmp_path: Path, tiny_vlm: Path) -> None:
    built = _build(tmp_path, 3, kinds=(("pairwise", "t2i"),))
    ckpt = tmp_path / "ckpt"
    args = [sys.executable, "-m", "rrbench_train.cli", "sft", "--data", str(built), "--model", str(tiny_vlm),
            "--config", str(_config(tmp_path, max_steps=12, save_steps=2)), "--output-dir", str(ckpt)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    deadline = time.monotonic() + 240
    while not (ckpt / "checkpoint-2" / "trainer_state.json").is_file():
        assert proc.poll() is None and time.monotonic() < deadline, "sft ended before its first checkpoint"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (ckpt / "checkpoint-12").exists()  # killed mid-run
    resumed = subprocess.run(args, capture_output=True, text=True, timeout=300, env=_env())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (session,) = map(json.loads, (ckpt / "records.jsonl").read_text().splitlines())  # the killed one wrote none
    start = int(session["resumed_from"].split("-")[-1])
    assert start >= 2 and session["global_step"] == 12 and _stage(ckpt)["sessions"] == 2
    state = json.loads((ckpt / "checkpoint-12" / "trainer_state.json").read_text())
    steps = [e["step"] for e in state["log_history"] if "loss" in e]
    assert steps == list(range(1, 13))  # continued from the checkpoint's step, no step done twice in the log
    changed = subprocess.run([*args[:-4], "--config", str(_config(tmp_path, max_steps=13)), *args[-2:]],
                             capture_output=True, text=True, timeout=120, env=_env())
    assert changed.returncode == 2 and "holds another training run (its config (max_steps" in changed.stderr


def _free_port() -> int:
    from tests.conftest import free_port

    return free_port()


# ------------------------------------------------------------------------------------------------ learning signal


def _critique_set(folder: Path, n: int, seed: int) -> list[tuple[str, str]]:
    """ShareGPT rows: one photo, a short request, a short pointwise critique; returns (image, request) pairs."""
    rng = random.Random(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows, asked = [], []
    for i in range(n):
        name = PHOTOS[i % len(PHOTOS)]
        (folder / "img" / f"{name}.png").write_bytes(photo_png(name))
        request = f"rate the photo: {rng.choice(['cat', 'rocket', 'coffee', 'astronaut'])}"
        rows.append({"messages": [{"role": "user", "content": f"<image>{request}"},
                                  {"role": "assistant", "content": random_critique(rng, "pointwise", "t2i")}],
                     "images": [f"img/{name}.png"]})
        asked.append((str(folder / "img" / f"{name}.png"), request))
    (folder / "t2i_pointwise.json").write_text(json.dumps(rows))
    return asked


def _parse_rate(model_dir: Path, asked: list[tuple[str, str]]) -> float:
    """The fraction of greedy answers rrbench's parser accepts (pointwise, t2i)."""
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    accepted = 0
    for image, request in asked:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": request}]}]
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = processor(text=[text], images=[Image.open(image).convert("RGB")], return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=110, do_sample=False)
        answer = processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        accepted += critique.parse_critique(answer, "t2i", pairwise=False).error is None
    return accepted / len(asked)


@pytest.mark.slow
def test_learning_signal_held_out_loss_falls_and_answers_start_to_parse(tmp_path: Path, tiny_vlm: Path) -> None:
    _critique_set(tmp_path / "train", 120, seed=0)
    held_out = _critique_set(tmp_path / "held-out", 12, seed=1)
    assert cli.main(["import-sft", "--data", str(tmp_path / "train"), "--out", str(tmp_path / "s")]) == 0
    (data,) = (tmp_path / "s").glob("import-sft__*")
    before = _parse_rate(tiny_vlm, held_out)
    config = _config(tmp_path, learning_rate=3e-3, lr_scheduler_type="cosine", warmup_fraction=0.05,
                     max_steps=LEARNING_STEPS, effective_batch_size=8, per_device_train_batch_size=8,
                     eval_fraction=0.2, save_steps=1000, logging_steps=10)
    assert cli.main(["sft", "--data", str(data), "--model", str(tiny_vlm), "--config", str(config),
                     "--output-dir", str(tmp_path / "ckpt")]) == 0
    metrics = _stage(tmp_path / "ckpt")["metrics"]
    after = _parse_rate(tmp_path / "ckpt", held_out)
    print(f"learning signal: held-out loss {metrics['eval_loss_before']:.3f} -> {metrics['eval_loss_after']:.3f}, "
          f"parse rate {before:.2f} -> {after:.2f}")
    assert metrics["eval_loss_after"] < 0.5 * metrics["eval_loss_before"]
    assert before == 0.0 and after >= 0.75


LEARNING_STEPS = 50
