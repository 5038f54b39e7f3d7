"""The RL reward (training/rl/reward.py) and its monitors (training/rl/monitor.py).

* The aspect mapping on hand-worked judgements: (weighted mean - 1) / 3, N/A skipped or counted as the floor,
  weights, clamping, the edit aspect lists (ours and the reference's), scalar scores; the config refuses bad keys.
* Failures are results with a kind and no value, never 0.0: HTTP errors, unparsable critiques, all-N/A critiques.
* Against a scripted RationalRewards-format critic on 127.0.0.1 (tests/judge_server.py), reached by rrbench's own
  client: order kept across chunks answered out of order, retries of transient failures, ``submit`` returning at
  once while the critic (fixed latency) works in the background, a per-batch deadline, and a server that dies
  mid-batch: failures counted by kind, ``healthy()`` false.
* The hacking flag on hand-made series, the monitor's JSONL, resume, and its summary page.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from rrbench import FailureKind, Judgement, UserError
from rrbench_train.rl.monitor import Monitor, MonitorConfig, fitted_change, hacking_flags, reward_stats
from rrbench_train.rl.reward import (
    REFERENCE_ASPECTS,
    Reward,
    RewardConfig,
    RewardResult,
    aspect_reward,
    group_normalized,
    to_result,
)
from tests.judge_server import Reply, ScriptedJudge
from tests.refine_critic import IF, NA, PVQ, TF, TR, Critic, answer

PROMPTS = [f"a red circle beside tree number {i:02d}." for i in range(12)]


def critique(scores: Mapping[str, float | None], failure: FailureKind | None = None) -> Judgement:
    return Judgement(aspects=(scores,), scores=() if failure else (0.0,), failure=failure)


def images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)) for _ in range(n)]


def config(**kw: Any) -> RewardConfig:
    return RewardConfig.from_dict({"model": "rationalrewards-8b", **kw})


# ------------------------------------------------------------------------------------------- the mapping


def test_the_aspect_mapping_on_hand_worked_critiques() -> None:
    t2i = config()
    # (4 + 3) / 2 = 3.5 -> (3.5 - 1) / 3; Text Rendering N/A is left out
    assert to_result(critique({TF: 4, PVQ: 3, TR: None}), t2i).value == pytest.approx(2.5 / 3)
    # weights 2:1 -> (8 + 3) / 3 = 11/3 -> (11/3 - 1) / 3 = 8/9
    weighted = config(weights={TF: 2, PVQ: 1, TR: 1})
    assert to_result(critique({TF: 4, PVQ: 3, TR: None}), weighted).value == pytest.approx(8 / 9)
    # na: zero counts Text Rendering as the floor: (4 + 3 + 1) / 3 = 8/3 -> 5/9
    assert to_result(critique({TF: 4, PVQ: 3, TR: None}), config(na="zero")).value == pytest.approx(5 / 9)
    # clamp: 6 -> 4, 2 stays: mean 3 -> 2/3; unclamped: mean 4 -> 1.0 (the reference's behaviour)
    assert to_result(critique({TF: 6, PVQ: 2}), t2i).value == pytest.approx(2 / 3)
    assert to_result(critique({TF: 6, PVQ: 2}), config(clamp=False)).value == pytest.approx(1.0)
    # edit: all four aspects by default (Flow-Factory); the reference's three leave Image Faithfulness out
    edit = {TF: 4, IF: 1, PVQ: 4, TR: None}
    assert to_result(critique(edit), config(generation="edit")).value == pytest.approx(2 / 3)
    reference = config(generation="edit", aspects=list(REFERENCE_ASPECTS))
    assert to_result(critique(edit), reference).value == pytest.approx(1.0)
    assert aspect_reward({TF: 1, PVQ: 1}, {TF: 1, PVQ: 1}) == 0.0
    assert aspect_reward({TF: 4, PVQ: 4}, {TF: 1, PVQ: 1}) == 1.0
    # a scalar model's own score, as it is
    scalar = RewardConfig.from_dict({"model": "pickscore"})
    assert scalar.resolved_mapping == "score"
    assert to_result(Judgement(scores=(21.5,)), scalar) == RewardResult(21.5, {})


def test_failures_are_kinds_never_numbers() -> None:
    t2i = config()
    http = to_result(Judgement.failed(FailureKind.HTTP, "HTTP 500"), t2i)
    assert (http.value, http.failure, http.detail) == (None, "http", "HTTP 500")
    all_na = to_result(critique({TF: None, PVQ: None, TR: None}, failure=FailureKind.PARSE), t2i)
    assert (all_na.value, all_na.failure) == (None, "all_na")
    # rrbench's critic reports "all N/A" as a parse failure that keeps the aspects: this config's list decides
    only_if = critique({TF: None, IF: 3, PVQ: None, TR: None}, failure=FailureKind.PARSE)
    assert to_result(only_if, config(generation="edit")).value == pytest.approx(2 / 3)
    assert to_result(only_if, config(generation="edit", aspects=list(REFERENCE_ASPECTS))).failure == "all_na"
    assert to_result(Judgement(scores=(0.5,)), t2i).failure == "no_aspects"  # a scalar model under the aspect map
    assert to_result(Judgement(scores=(math.nan,)), config(mapping="score")).failure == "non_finite"
    assert to_result(Judgement(scores=(None,)), config(mapping="score")).failure == "no_score"


def test_the_config_refuses_what_it_cannot_honour() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"modle": "x"}, "unknown key(s) modle"),
        ({"aspects": ["Text faithfulness"]}, "unknown aspect"),
        ({"aspects": [IF]}, "scored only for edits"),
        ({"weights": {IF: 1}}, "not in the aspect list"),
        ({"weights": {TF: -1}}, ">= 0"),
        ({"mapping": "mean"}, "'mapping' must be"),
        ({"na": "2.5"}, "'na' must be"),
        ({"mapping": "score", "per_aspect_group_norm": True}, "needs aspect scores"),
        ({"batch_size": 0}, "'batch_size'"),
    ]
    for bad, words in cases:
        with pytest.raises(UserError, match=words.replace("(", r"\(").replace(")", r"\)")):
            config(**bad)


def test_per_aspect_group_normalisation_by_hand() -> None:
    cfg = config(per_aspect_group_norm=True, aspects=[TF, PVQ])
    results = [RewardResult(0.5, {TF: 4.0, PVQ: 2.0}), RewardResult(0.5, {TF: 2.0, PVQ: 4.0}),
               RewardResult(None, {}, "http"), RewardResult(0.5, {TF: 3.0, PVQ: None}),
               RewardResult(0.5, {TF: 3.0, PVQ: 3.0})]
    keys = ["a", "a", "a", "b", "b"]
    out = group_normalized(results, keys, cfg)
    # group a: TF z = +1, -1; PVQ z = -1, +1 -> 0, 0; the failure stays None.
    # group b: TF constant -> 0; PVQ only the last -> 0
    assert out[0] == pytest.approx(0.0, abs=1e-5) and out[1] == pytest.approx(0.0, abs=1e-5)
    assert out[2] is None and out[3] == 0.0 and out[4] == 0.0
    weighted = config(per_aspect_group_norm=True, aspects=[TF, PVQ], weights={TF: 3, PVQ: 1})
    # member 0: (3 * 1 + 1 * -1) / 4 = 0.5
    assert group_normalized(results, keys, weighted)[0] == pytest.approx(0.5, abs=1e-5)


# ------------------------------------------------------------------------------------ a real critic server


def scripted(scores: Mapping[int, Mapping[str, float | str]], delay_s: float = 0.0, jitter: bool = False,
             script: dict[int, list[str | Reply]] | None = None) -> Critic:
    """A critic answering prompt i with ``scores[i]`` (or, per ask, ``script[i][ask]``)."""
    rng = random.Random(0)

    def reply(number: int, before: int) -> str | Reply:
        if jitter:
            time.sleep(rng.random() * 0.05)  # answers come back out of order
        if script and number in script:
            return script[number][min(before, len(script[number]) - 1)]
        return answer(scores[number], None)

    return Critic(PROMPTS, reply, delay_s=delay_s)


def critic_reward(url: str, **kw: Any) -> Reward:
    args = {"base_urls": [url], "max_retries": 0, "timeout_s": 10.0}
    return Reward(config(model_args=args, **{"retry_wait_s": 0.05, **kw}))


def test_order_is_kept_across_chunks_answered_out_of_order() -> None:
    expected = {i: {TF: 1 + (i % 4), PVQ: 4 - (i % 4), TR: 1 + (i * 7 % 4)} for i in range(10)}
    with ScriptedJudge(scripted(expected, jitter=True)) as server:
        reward = critic_reward(server.url, batch_size=3, concurrency=2)
        try:
            results = reward.submit(PROMPTS[:10], images(10), None, [f"row{i}" for i in range(10)]).result(30)
            assert reward.healthy()
        finally:
            reward.close()
    for i, result in enumerate(results):
        s = expected[i]
        assert result.value == pytest.approx((sum(s.values()) / 3 - 1) / 3), i
        assert result.aspects == {k: float(v) for k, v in s.items()}
    assert reward.stats()["ok"] == 10 and reward.stats()["batches"] == 1


def test_failures_are_masked_counted_and_transient_ones_asked_again() -> None:
    good: dict[str, float | str] = {TF: 4, PVQ: 4, TR: NA}
    script: dict[int, list[str | Reply]] = {
        1: [Reply("overloaded", status=500)],  # always: http after the re-ask
        2: [Reply("overloaded", status=500), answer(good, None)],  # healed by the re-ask
        3: ["I like it."],  # no critique: parse
        4: [answer({TF: NA, PVQ: NA, TR: NA}, None)],  # every aspect N/A
    }
    critic = scripted(dict.fromkeys(range(6), good), script=script)
    with ScriptedJudge(critic) as server:
        reward = critic_reward(server.url, retries=1)
        try:
            results = reward.submit(PROMPTS[:6], images(6), None, [f"row{i}" for i in range(6)]).result(30)
        finally:
            reward.close()
    assert [r.failure for r in results] == [None, "http", None, "parse", "all_na", None]
    assert [r.value for r in results] == [1.0, None, 1.0, None, None, 1.0]  # never 0.0 for a failure
    stats = reward.stats()
    assert stats["failed:http"] == 1 and stats["failed:parse"] == 1 and stats["failed:all_na"] == 1
    assert stats["failed"] == 3 and stats["ok"] == 3 and stats["retried"] == 2  # prompts 1 and 2, once
    assert critic.asked[1] == 2 and critic.asked[3] == 1  # a parse failure is not asked again
    logged = reward_stats(results)
    assert logged["reward/failure_rate"] == 0.5 and logged["reward/mean"] == 1.0  # the mean ignores failures
    assert logged["reward/failed:http"] == 1 and logged[f"reward/aspect/{TR}/na_rate"] == 1.0


def test_submit_returns_at_once_and_the_critic_works_in_the_background() -> None:
    latency, sampling = 1.0, 1.0
    critic = scripted({key: {TF: 3, PVQ: 3, TR: 3} for key in range(8)}, delay_s=latency)
    with ScriptedJudge(critic) as server:
        reward = critic_reward(server.url)
        try:
            start = time.monotonic()
            # 4 images: more connections at once than the test server's listen backlog (5) can wait 1 s for a SYN retry
            future = reward.submit(PROMPTS[:4], images(4), None, [str(i) for i in range(4)])
            submitted = time.monotonic() - start
            assert not future.done()
            time.sleep(sampling)  # the trainer samples the next batch meanwhile
            assert sum(critic.asked.values()) >= 1  # the critic was asked while we "sampled"
            waiting = time.monotonic()
            results = future.result(30)
            waited = time.monotonic() - waiting
        finally:
            reward.close()
    assert submitted < 0.1
    assert all(r.value == pytest.approx(2 / 3) for r in results)
    # judged one after the other, the wait would be at least one critique's latency
    assert waited < latency


def test_a_batch_deadline_fails_late_images_as_timeouts() -> None:
    critic = scripted({key: {TF: 3, PVQ: 3, TR: 3} for key in range(4)}, delay_s=1.0)
    with ScriptedJudge(critic) as server:
        reward = critic_reward(server.url, timeout_s=0.2, retries=0)
        try:
            start = time.monotonic()
            results = reward.submit(PROMPTS[:4], images(4), None, list("abcd")).result(30)
            assert time.monotonic() - start < 0.8
        finally:
            reward.close()
    assert {(r.value, r.failure) for r in results} == {(None, "timeout")}
    assert reward.stats()["failed:timeout"] == 4


def test_a_server_that_dies_mid_batch_gives_counted_failures_and_is_reported_unhealthy() -> None:
    critic = scripted({key: {TF: 4, PVQ: 2, TR: NA} for key in range(8)})
    with ScriptedJudge(critic, die_after=3) as server:
        reward = critic_reward(server.url, retries=1)
        try:
            results = reward.submit(PROMPTS[:8], images(8), None, [f"row{i}" for i in range(8)]).result(30)
            assert not reward.healthy()
            assert "unreachable" in str(reward.probe()[server.url])
            assert not reward.wait_healthy(0.3, interval_s=0.1)
            again = reward.submit(PROMPTS[:2], images(2), None, ["x", "y"]).result(30)  # still down: failures
        finally:
            reward.close()
    ok = [r for r in results if r.ok]
    assert len(ok) == 3 and all(r.value == pytest.approx(2 / 3) for r in ok)  # (4 + 2) / 2 = 3
    assert {r.failure for r in results if not r.ok} == {"http"}
    assert all(r.value is None for r in [*results, *again] if not r.ok)
    assert [r.failure for r in again] == ["http", "http"]
    stats = reward.stats()
    assert stats["failed:http"] == 7 and stats["images"] == 10
    assert {key for key, _, _ in reward.recent_failures()} >= {"x", "y"}


def test_an_in_process_scalar_model_and_no_servers_to_probe() -> None:
    with Reward(RewardConfig.from_dict({"model": "constant", "model_args": {"value": 0.25},
                                        "batch_size": 2})) as reward:
        results = reward.submit(["p"] * 5, images(5), None, list("abcde")).result(30)
        assert reward.healthy() and reward.probe() == {}
    assert [r.value for r in results] == [0.25] * 5


def test_a_bad_model_name_fails_before_training() -> None:
    with pytest.raises(UserError):
        Reward(RewardConfig.from_dict({"model": "no-such-model"}))


# ------------------------------------------------------------------------------------------- the monitors


def test_the_hacking_flag_on_hand_made_series() -> None:
    assert fitted_change([0, 1, 2, 3]) == pytest.approx(3.0)
    assert fitted_change([3, 3, 3]) == 0.0
    rising = [0.50, 0.55, 0.60, 0.65, 0.70, 0.75]
    # the held-out judge rises with the train reward for 3 evaluations, then falls
    falling_late = [0.60, 0.62, 0.64, 0.63, 0.58, 0.52]
    assert hacking_flags(rising, falling_late, window=3) == [False, False, False, False, True, True]
    assert not any(hacking_flags(rising, [0.6, 0.61, 0.63, 0.64, 0.66, 0.69], window=3))  # both rise: learning
    flat = [0.6, 0.6, 0.6, 0.6, 0.6, 0.6]
    assert not any(hacking_flags(flat, list(reversed(rising)), window=3))  # degrading, but not hacking
    # noise below the thresholds is not a flag
    noisy = [0.60, 0.605, 0.598, 0.603, 0.601, 0.599]
    assert not any(hacking_flags(rising, noisy, window=3, min_drop=0.01))
    # a window of 4: the first possible flag is the 4th evaluation
    assert hacking_flags(rising, [0.7, 0.65, 0.6, 0.55, 0.5, 0.45], window=4) == [False] * 3 + [True] * 3


def test_the_monitor_logs_flags_resumes_and_writes_its_summary(tmp_path: Path) -> None:
    cfg = {"hacking_window": 3, "heldout_judge": "constant"}
    with pytest.raises(UserError, match="must differ"):
        Monitor(tmp_path, cfg, train_model="constant")
    with pytest.raises(UserError, match="unknown key"):
        Monitor(tmp_path, {"window": 3})
    monitor = Monitor(tmp_path, cfg, train_model="rationalrewards-8b")
    judge = [0.60, 0.62, 0.61, 0.55, 0.50]
    for k in range(5):
        for step in range(10 * k + 1, 10 * k + 11):
            monitor.log_step(step, {"reward/mean": 0.5 + 0.01 * step, "reward/failure_rate": 0.1, "kl": 1e-3,
                                    "loss": math.nan})
        monitor.heldout_scores(10 * k + 10, [judge[k], judge[k], None])
    held = monitor.heldout_lines()
    assert [line["heldout/failed"] for line in held] == [1.0] * 5
    assert held[0]["heldout/train_mean"] == pytest.approx(0.5 + 0.01 * 5.5)  # mean of steps 1..10
    assert monitor.hacking_steps() == [40, 50]
    lines = [json.loads(t) for t in (tmp_path / "monitor.jsonl").read_text().splitlines()]
    assert len(lines) == 55 and lines[0]["loss"] == "nan"
    page = monitor.finish()
    assert page is not None
    text = page.read_text()
    assert "Reward hacking flagged at step(s) 40, 50" in text and "reward/failure_rate" in text
    assert (tmp_path / "plots" / "heldout.png").exists()
    resumed = Monitor(tmp_path, cfg, resume_step=30)  # the killed run's later lines are dropped
    assert max(line["step"] for line in resumed.lines) == 30 and len(resumed.heldout_lines()) == 3


def test_held_out_images_are_judged_by_the_second_judge(tmp_path: Path) -> None:
    monitor = Monitor(tmp_path, MonitorConfig(heldout_judge="constant", heldout_judge_args={"value": 0.3},
                                              plots=False))
    out = monitor.heldout(10, ["p", "q"], images(2), train_scores=[0.8, None])
    monitor.finish()
    assert out["heldout/judge_mean"] == pytest.approx(0.3) and out["heldout/train_mean"] == 0.8
    assert "heldout/hacking" in out and not out["heldout/hacking"]


def test_the_progress_line_says_what_a_step_did_and_what_is_left() -> None:
    from rrbench_train.rl.monitor import progress_line

    line = progress_line(7, 100, {"reward/mean": 0.61234, "reward/std": 0.1, "reward/failed": 3.0, "reward/n": 64.0,
                                  "loss_total": 0.01234, "kl": 1.5e-4, "heldout/judge_mean": 0.55,
                                  "heldout/hacking": 1.0}, 12.0)
    assert line.startswith("step 7/100 · reward 0.6123 ± 0.1000 · failed 3/64 · loss 0.0123 · kl 0.00015")
    assert "held-out judge 0.5500" in line and "REWARD HACKING?" in line
    assert line.endswith("12.0 s/step, 0:18:36 left")  # 93 steps × 12 s
    quiet = progress_line(1, 2, {"loss_total": float("nan"), "nan_skipped": 1.0}, None)
    assert quiet == "step 1/2 · non-finite loss: step skipped"
