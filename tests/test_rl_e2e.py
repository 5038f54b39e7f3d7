"""End to end: RL driven by a RationalRewards-format critic served on 127.0.0.1, reached by rrbench's own client.

The critic (tests/judge_server.py + tests/refine_critic.py's answer format) scores each image it is sent from its
pixels (Text Faithfulness from the red-minus-blue balance, Physical and Visual Quality from the brightness, with
two decimals; Text Rendering N/A), and answers some prompts with prose that has no scores, so those images fail as
``parse``. The tests check what the trainer did with those answers against what the server itself recorded, not
against the trainer's own arithmetic:

* every epoch's reward mean is the mean of the server's scores for that epoch's images, mapped (mean − 1)/3; the
  unparsable prompt's images are failures, masked (``valid_samples`` = global batch − failures), never a number;
* the held-out monitor judges with the EMA weights, leaves the trained weights as they were, and its second judge
  reads the same images;
* a critic that dies mid-epoch pauses training until it is back at its address; the epoch is asked again and no
  step ever trains on the rewards of the dead one; a critic that never comes back stops the run with exit 3, one
  line and the step-0 checkpoint.
* the checkpoint of the served run loads into ``rrbench generate``.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tests.judge_server import Reply, Request, ScriptedJudge
from tests.refine_critic import NA, PVQ, TF, TR, answer
from tests.rl_common import PROMPTS, generate, one_thread, register_rewards, tiny_config, tiny_flux, write_config

__all__ = ["tiny_flux"]  # the session fixture, imported so pytest finds it
UNPARSABLE = set(PROMPTS[::3])  # the critic answers these prompts without any score
GLOBAL_BATCH = 8


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    yield from one_thread()


class PixelCritic:
    """Scores each image from its pixels and keeps, in order, what it answered: (prompt, image sha, reward or None
    for an unparsable answer), the reward being the paper's mapping of its own two scores."""

    def __init__(self, unparsable: set[str] = UNPARSABLE) -> None:
        self.unparsable = unparsable
        self.answers: list[tuple[str, bytes, float | None]] = []
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> str | Reply:
        prompt = next(p for p in sorted(PROMPTS, key=len, reverse=True) if p in request.text)
        pixels = np.asarray(Image.open(io.BytesIO(request.images[-1].data)).convert("RGB"), dtype=np.float64) / 255
        if prompt in self.unparsable:
            text, value = "I would rather not score this picture.", None
        else:
            # two decimals (the format allows them): the tiny pipeline's images differ by ~0.01 in these means
            tf = round(1 + 3 * float(np.clip(0.5 + 10 * (pixels[..., 0].mean() - pixels[..., 2].mean()), 0, 1)), 2)
            pvq = round(1 + 3 * float(pixels.mean()), 2)
            text, value = answer({TF: tf, PVQ: pvq, TR: NA}, None), ((tf + pvq) / 2 - 1) / 3
        with self.lock:
            self.answers.append((prompt, request.images[-1].data, value))
        return text


def critic_config(pipe: Path, out: Path, url: str, **overrides: Any) -> Path:
    register_rewards()
    values = {"reward": {"model": "rationalrewards-8b", "batch_size": 8, "retries": 0,
                         "model_args": {"base_urls": [url], "max_retries": 0, "timeout_s": 20.0}},
              "sampling.groups_per_epoch": 2, "sampling.group_size": 4, **overrides}
    return write_config(out / "config.yaml", tiny_config(pipe, out, **values))


def steps_of(out: Path) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in (out / "monitor.jsonl").read_text().splitlines()]
    return [x for x in lines if x["kind"] == "step"]


def stat(line: dict[str, Any], key: str, default: float = 0.0) -> float:
    return float(line.get(key, default))


def test_a_served_critic_drives_training_with_its_failures_masked(tiny_flux: Path, tmp_path: Path) -> None:
    from rrbench_train import cli

    critic = PixelCritic()
    with ScriptedJudge(critic) as server:
        config = critic_config(tiny_flux, tmp_path, server.url, **{
            "train.epochs": 3, "train.lr": 0.02, "train.eval_every": 1, "train.ema_decay": 0.5, "data.heldout": 4,
            "monitor": {"heldout_judge": "brightness", "plots": False}})
        assert cli.main(["rl", "--config", str(config)]) == 0
    steps = steps_of(tmp_path / "run")
    assert [s["step"] for s in steps] == [1, 2, 3]
    heldout_n = 4
    position = 0
    for line in steps:  # the server's answers, in order: the epoch's 8 images, then the 4 held-out ones
        epoch = critic.answers[position: position + GLOBAL_BATCH]
        heldout = critic.answers[position + GLOBAL_BATCH: position + GLOBAL_BATCH + heldout_n]
        position += GLOBAL_BATCH + heldout_n
        values = [v for _, _, v in epoch if v is not None]
        failed = sum(v is None for _, _, v in epoch)
        assert stat(line, "reward/failed") == failed
        assert stat(line, "reward/failed:parse") == failed
        assert stat(line, "valid_samples") == GLOBAL_BATCH - failed  # groups are whole prompts: all or none
        assert stat(line, "reward/mean") == pytest.approx(float(np.mean(values)), abs=1e-6)
        assert stat(line, "reward/aspect/Text Rendering/na_rate") == 1.0
        assert stat(line, "reward_epoch_retries") == 0
        held_values = [v for _, _, v in heldout if v is not None]
        if held_values:
            assert stat(line, "heldout/mean") == pytest.approx(float(np.mean(held_values)), abs=1e-6)
        assert 0.0 <= stat(line, "heldout/judge_mean", -1.0) <= 1.0  # the second judge saw the images
    assert position == len(critic.answers)  # nothing else was asked: no retries, no duplicate judging
    assert any(p in UNPARSABLE for p, _, _ in critic.answers)  # the failure path was exercised
    lora = tmp_path / "run" / "checkpoints" / "step-000003" / "lora"
    flags = ("-Gsteps=4", "-Gmax_sequence_length=8")
    _, base = generate(tmp_path / "gen-base", "flux-dev", tiny_flux, 16, *flags)
    _, trained = generate(tmp_path / "gen-rl", "flux-dev", tiny_flux, 16, *flags, f"-Glora={lora}")
    assert base != trained


def test_heldout_images_come_from_the_ema_and_leave_the_trained_weights_alone(tiny_flux: Path,
                                                                               tmp_path: Path) -> None:
    from rrbench_train.rl.config import load_config
    from rrbench_train.rl.trainer import Trainer, evaluate_images

    register_rewards()
    path = write_config(tmp_path / "config.yaml", tiny_config(tiny_flux, tmp_path, **{
        "train.ema_decay": 0.9, "train.lr": 0.05, "data.heldout": 2, "reward.model": "red_minus_blue"}))
    trainer = Trainer(load_config(path, ()))
    try:
        trainer.run(max_steps=2)
        assert trainer.ema is not None
        trained = {n: p.detach().clone() for n, p in trainer.params.items()}
        assert any(not torch.equal(trained[n], trainer.ema[n]) for n in trained)  # the EMA lags the weights
        rows = trainer.heldout_rows
        with_ema, _ = evaluate_images(trainer.adapter, rows, trainer.config, "t2i", trainer.ema_weights())
        assert all(torch.equal(p, trained[n]) for n, p in trainer.params.items())  # put back after
        with torch.no_grad():
            for n, p in trainer.params.items():
                p.copy_(trainer.ema[n])
        by_hand, _ = evaluate_images(trainer.adapter, rows, trainer.config, "t2i")
        with torch.no_grad():
            for n, p in trainer.params.items():
                p.copy_(trained[n])
        plain, _ = evaluate_images(trainer.adapter, rows, trainer.config, "t2i")
    finally:
        trainer.reward.close()
    assert [i.tobytes() for i in with_ema] == [i.tobytes() for i in by_hand]
    assert [i.tobytes() for i in with_ema] != [i.tobytes() for i in plain]


def bring_back(first: ScriptedJudge, critic: PixelCritic, after_s: float, started: list[ScriptedJudge]) -> None:
    """When ``first`` has died, wait ``after_s`` and serve ``critic`` again at its port."""
    deadline = time.monotonic() + 60
    while first._thread is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(after_s)
    started.append(ScriptedJudge(critic, port=first.port).__enter__())


def test_a_critic_that_dies_mid_epoch_pauses_training_until_it_is_back(tiny_flux: Path, tmp_path: Path) -> None:
    from rrbench_train import cli

    critic = PixelCritic(unparsable=set())  # every failure is the outage's
    revived: list[ScriptedJudge] = []
    first = ScriptedJudge(critic, die_after=3).__enter__()  # 3 answers, then the 4th request's connection is cut
    helper = threading.Thread(target=bring_back, args=(first, critic, 0.5, revived), daemon=True)
    helper.start()
    try:
        config = critic_config(tiny_flux, tmp_path, first.url, **{
            "train.epochs": 2, "reward_retry": {"retries": 5, "pause_s": 10.0, "max_failure_rate": 0.0}})
        assert cli.main(["rl", "--config", str(config)]) == 0
    finally:
        helper.join(5)
        for server in [first, *revived]:
            server.stop()
    assert len(revived) == 1
    steps = steps_of(tmp_path / "run")
    assert [s["step"] for s in steps] == [1, 2]
    first_epoch, second_epoch = steps
    assert stat(first_epoch, "reward_epoch_retries") >= 1 and stat(second_epoch, "reward_epoch_retries") == 0
    for line in steps:  # every trained step's rewards are the revived server's, all of them
        assert stat(line, "reward/n") == GLOBAL_BATCH
    # The last 8 answers are epoch 2's; the 8 before them, the first epoch's last (complete) attempt: with
    # max_failure_rate 0 an attempt with any failure is asked again (a connection kept open to the dead server
    # can fail the first attempt after the revival too).
    revived_first = critic.answers[-2 * GLOBAL_BATCH: -GLOBAL_BATCH]
    values = [v for _, _, v in revived_first if v is not None]
    assert stat(first_epoch, "reward/failed") == sum(v is None for _, _, v in revived_first)
    assert stat(first_epoch, "reward/mean") == pytest.approx(float(np.mean(values)), abs=1e-6)
    assert not any(stat(line, "reward/failed:http") for line in steps)  # no step saw the outage


def test_a_critic_that_never_comes_back_stops_the_run_with_its_checkpoint(
        tiny_flux: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rrbench_train import cli

    with ScriptedJudge(PixelCritic(), die_after=3) as server:
        config = critic_config(tiny_flux, tmp_path, server.url, **{
            "reward_retry": {"retries": 1, "pause_s": 0.3, "max_failure_rate": 0.25}})
        code = cli.main(["rl", "--config", str(config)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1, err
    assert "the reward failed for" in err[0] and "http" in err[0] and "step-000000" in err[0], err
    assert (tmp_path / "run" / "checkpoints" / "step-000000" / "state.pt").exists()
    assert not (tmp_path / "run" / "monitor.jsonl").exists() or steps_of(tmp_path / "run") == []


def test_a_bad_generator_behind_a_live_critic_is_one_line_and_leaves_nothing_open(tiny_flux: Path,
                                                                                   tmp_path: Path) -> None:
    """The critic is reached (its client session opens) before the generator fails to load: the command still ends
    with exactly one line and exit 2, the session closed (no "Unclosed client session" under it)."""
    import subprocess
    import sys

    from tests.rl_common import plugin_env

    with ScriptedJudge(PixelCritic()) as server:
        config = critic_config(tiny_flux, tmp_path, server.url, **{"generator.path": str(tmp_path / "no-such-pipe")})
        done = subprocess.run([sys.executable, "-W", "default", "-m", "rrbench_train.cli", "rl", "--config",
                               str(config)], capture_output=True, text=True, env=plugin_env(), timeout=300)
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert done.returncode == 2 and len(lines) == 1 and "no-such-pipe" in lines[0], done.stderr
