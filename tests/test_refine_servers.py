"""``rrbench refine`` with the tiny diffusers pipelines (tests/tiny_diffusers.py) and real critic servers on 127.0.0.1.

* A scripted RationalRewards critic (tests/judge_server.py + tests/refine_critic.py) answers per sample: kept,
  kept through an N/A, regenerated from a multi-line refined request, no / an empty / an enormous refined request,
  HTTP 500. The outcome counts, the multi-line requests the regenerated images were made from, and the final set
  (one image per slot, the base image unless regenerated) are checked against the script; for a Flux Kontext edit,
  the critic sees the source and the edit; with a LoRA, every generation stage uses it.
* ``rrbench refine`` killed with SIGKILL at seeded points in three stages and run again: no image made twice, no
  recorded critique asked again, and the summary of an uninterrupted run.
* The tiny random-weight Qwen3-VL over ``transformers serve`` as the critic: its junk critiques are failures, the
  slots keep their base images counted ``critic-failed``, and the refine completes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rrbench import cli, registry
from rrbench.store import load_results
from rrbench.types import FailureKind
from tests import tiny_diffusers
from tests.judge_server import Reply, Request, ScriptedJudge
from tests.refine_critic import IF, NA, PVQ, TF, TR, Critic, answer, sha

# Flux settings that keep a CPU image near 0.2 s (a longer refined request is cut by the tokenizers, not by rrbench)
FLUX = ["-G", "steps=2", "-G", "width=32", "-G", "height=32", "-G", "max_sequence_length=32"]
KONTEXT = [*FLUX, "-G", "max_area=1024", "-G", "auto_resize=false"]
CRITIC = ["--critic", "rationalrewards-8b", "-M", "max_retries=0"]  # an HTTP 500 is a failure at once, no backoff


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """A tiny pipeline folder per family, built once per module and only when a test asks for it."""
    built: dict[str, Path] = {}

    def folder(kind: str) -> Path:
        if kind not in built:
            built[kind] = tiny_diffusers.BUILDERS[kind](tmp_path_factory.mktemp(kind))
        return built[kind]

    return folder


def samples(**task_args: Any) -> list[tuple[str, str]]:
    """The task's (sample id, prompt) pairs, in order."""
    task = registry.get("task", "sanity-gen").build(**task_args)
    return [(sample.id, sample.prompt) for sample in task.load(None)]


def prompts(**task_args: Any) -> list[str]:
    return [prompt for _, prompt in samples(**task_args)]


@dataclass
class Refine:
    """A finished refine: its output folder, its summary and the run directories of its stages."""

    out: Path
    summary: dict[str, Any]

    @classmethod
    def read(cls, out: Path) -> Refine:
        (path,) = out.glob("*__refine-*/refine.json")
        return cls(out, json.loads(path.read_text()))

    def stage(self, name: str, k: int = 0) -> Path:
        value = self.summary["stages"][name]
        return self.out / (value if isinstance(value, str) else value[k])

    def images(self, name: str, k: int = 0) -> dict[tuple[str, int], dict[str, Any]]:
        """(sample, index) -> the stage's record entry of that image."""
        return {(r.sample_id, e["index"]): dict(e) for r in load_results(self.stage(name, k)) for e in r.candidates}

    def png(self, name: str, entry: dict[str, Any], k: int = 0) -> bytes:
        return (self.stage(name, k) / entry["path"]).read_bytes()

    def outcomes(self) -> dict[tuple[str, int], str]:
        return {(s["sample"], s["index"]): s["outcome"] for s in self.summary["slots"]}


def refine_in_process(out: Path, url: str, *args: str) -> Refine:
    code = cli.main(["refine", *args, *CRITIC, "--base-url", url, "--model", "sanity-gen-judge", "--output", str(out),
                     "--cache", str(out / "cache.sqlite"), "--quiet"])
    assert code == 0
    return Refine.read(out)


def final_set_checks(refine: Refine, slots: int, regenerated: set[tuple[str, int]]) -> None:
    """One image per slot in the final set: the regenerated image where one was made, else the base image."""
    base, final = refine.images("base"), refine.images("finals")
    regen = refine.images("regenerations") if refine.summary["stages"]["regenerations"] else {}
    assert len(final) == len(base) == slots
    assert set(final) == set(base)
    for key, entry in final.items():
        made = refine.png("finals", entry)
        if key in regenerated:
            assert made == refine.png("regenerations", regen[key]) != refine.png("base", base[key]), key
        else:
            assert made == refine.png("base", base[key]), key
    assert {k for k, e in regen.items() if "path" in e} == regenerated  # nothing else was made again


# ----------------------------------------------------------------------------------- scripted critic, t2i

T2I_ARGS = {"n": 8, "images_per_prompt": 2}
T2I_PROMPTS = prompts(**T2I_ARGS)
# prompt 2 and 3: regenerated from these requests, kept whole (the second with a blank line inside)
MULTI_2 = "A red triangle drawn just below a yellow circle,\nboth flat on a white background,\nnothing else in view."
MULTI_3 = 'A purple square above the word "WATER".\n\nThe letters are black capitals, centred under the square.'
ENORMOUS = "\n".join(f"line {k}: an orange triangle above a red circle, drawn again and again" for k in range(80))
T2I_BASE: dict[int, str | Reply] = {
    0: answer({TF: 4, PVQ: 4, TR: NA}, "A green square in the bottom right,\nsharper."),  # kept (request ignored)
    1: answer({TF: 3.5, PVQ: NA, TR: NA}, "Three red circles in a row."),  # kept: N/A passes the rule
    2: answer({TF: 2, PVQ: 4, TR: NA}, MULTI_2),  # regenerated
    3: answer({TF: 4, PVQ: 1.5, TR: 2}, MULTI_3),  # regenerated (PVQ < 3)
    4: answer({TF: 2, PVQ: 3, TR: NA}, None),  # no refined request
    5: answer({TF: 1, PVQ: 2, TR: 3}, ""),  # an empty refined request
    6: answer({TF: 2, PVQ: 2, TR: NA}, ENORMOUS),  # longer than --max-request-chars (4000)
    7: Reply("the critic is overloaded", status=500),  # critic failure
}
T2I_OUTCOMES = {0: "kept", 1: "kept", 2: "regenerated", 3: "regenerated", 4: "no-refined-request",
                5: "no-refined-request", 6: "refined-request-too-long", 7: "critic-failed"}
GOOD = answer({TF: 4, PVQ: 4, TR: NA}, None)  # the critique of every regenerated image


def t2i_script(number: int, before: int) -> str | Reply:
    """The first critique of each of a prompt's 2 images is of its base image, later ones of regenerated images."""
    return T2I_BASE[number] if before < T2I_ARGS["images_per_prompt"] else GOOD


@pytest.fixture(scope="module")
def t2i(tiny: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Refine, Critic]:
    critic = Critic(T2I_PROMPTS, t2i_script)
    with ScriptedJudge(critic) as server:
        refine = refine_in_process(tmp_path_factory.mktemp("t2i"), server.url, "--task", "sanity-gen",
                                   *(f"-T{k}={v}" for k, v in T2I_ARGS.items()), "--generator", "flux-dev",
                                   "-G", f"path={tiny('flux')}", *FLUX)
    return refine, critic


def test_outcomes_follow_the_critic_script(t2i: tuple[Refine, Critic]) -> None:
    refine, critic = t2i
    expected = {(sample, index): T2I_OUTCOMES[k] for k, (sample, _) in enumerate(samples(**T2I_ARGS))
                for index in (0, 1)}
    assert refine.outcomes() == expected
    assert len(ENORMOUS) > 4000  # the default --max-request-chars
    counts = refine.summary["images"]
    assert counts["by_outcome"] == {"kept": 4, "regenerated": 4, "critic-failed": 2, "no-refined-request": 4,
                                    "refined-request-too-long": 2}
    assert (counts["total"], counts["regenerated"], counts["fraction_regenerated"]) == (16, 4, 0.25)
    assert counts["made_again_per_round"] == {"1": 4}
    # 16 base critiques, 4 of regenerated images; the HTTP 500 was not retried (-M max_retries=0)
    assert critic.asked == {0: 2, 1: 2, 2: 4, 3: 4, 4: 2, 5: 2, 6: 2, 7: 2}
    assert refine.summary["rounds"][0]["overall"]["n_samples"] == 8
    (page,) = (path.read_text() for path in refine.out.glob("*__refine-*/report.html"))
    assert ("16 images; kept: 4, regenerated: 4, critic-failed: 2, no-refined-request: 4, "
            "refined-request-too-long: 2") in page


def test_critic_means_before_and_after(t2i: tuple[Refine, Critic]) -> None:
    """Means over the slots with a critique (the failed prompt 7 has none); N/A is left out of a mean."""
    means = t2i[0].summary["critic_scores"]
    assert means["before"] == pytest.approx({TF: (4 + 3.5 + 2 + 4 + 2 + 1 + 2) / 7,
                                             PVQ: (4 + 4 + 1.5 + 3 + 2 + 2) / 6, TR: (2 + 3) / 2})
    # prompts 2 and 3 now hold regenerated images, critiqued TF 4, PVQ 4, TR N/A
    assert means["after"] == pytest.approx({TF: (4 + 3.5 + 4 + 4 + 2 + 1 + 2) / 7,
                                            PVQ: (4 + 4 + 4 + 3 + 2 + 2) / 6, TR: 3.0})


def test_a_multi_line_refined_request_is_used_whole(t2i: tuple[Refine, Critic]) -> None:
    refine = t2i[0]
    regen = refine.images("regenerations")
    final = refine.images("finals")
    base = refine.images("base")
    for sample, request in (("t2i-0002-relation", MULTI_2), ("t2i-0003-text", MULTI_3)):
        for index in (0, 1):
            assert regen[(sample, index)]["prompt"] == request
            assert final[(sample, index)]["prompt"] == request
            assert regen[(sample, index)]["seed"] == base[(sample, index)]["seed"]  # the base image's seed
    for slot in refine.summary["slots"]:
        if slot["outcome"] == "regenerated":
            assert slot["history"][0]["request"] in (MULTI_2, MULTI_3)


def test_the_final_set_has_one_image_per_slot(t2i: tuple[Refine, Critic]) -> None:
    refine = t2i[0]
    regenerated = {(s, i) for s in ("t2i-0002-relation", "t2i-0003-text") for i in (0, 1)}
    final_set_checks(refine, 16, regenerated)
    record = json.loads((refine.stage("finals") / "run.json").read_text())
    assert record["status"] == "complete" and record["spec"]["refine"]["stage"] == "final"
    assert record["spec"]["generator"] == "flux-dev" and "model" not in record["spec"]  # a generation run


# ----------------------------------------------------------------------------------- editing, LoRA

def test_an_edit_is_critiqued_with_its_source(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    task_args = {"variant": "edit", "n": 2, "size": 64, "images_per_prompt": 1}
    edit = answer({TF: 2, IF: 4, PVQ: 3, TR: NA}, "Make the square blue,\nand leave the rest as it is.")
    keep = answer({TF: 4, IF: 4, PVQ: 4, TR: NA}, None)
    critic = Critic(prompts(**task_args), lambda number, before: edit if (number, before) == (0, 0) else keep)
    with ScriptedJudge(critic) as server:
        refine = refine_in_process(tmp_path, server.url, "--task", "sanity-gen",
                                   *(f"-T{k}={v}" for k, v in task_args.items()),
                                   "--generator", "flux-kontext-dev", "-G", f"path={tiny('flux-kontext')}", *KONTEXT)
        requests = list(server.requests)
    assert refine.outcomes() == {("edit-0000-recolour", 0): "regenerated", ("edit-0001-add", 0): "kept"}
    final_set_checks(refine, 2, {("edit-0000-recolour", 0)})
    task = registry.get("task", "sanity-gen").build(**task_args)
    sources = {s.prompt: s.source[0].loaded().read_bytes() for s in task.load(None)}
    made = {sha(refine.png("base", e)) for e in refine.images("base").values()}
    made |= {sha(refine.png("regenerations", e)) for e in refine.images("regenerations").values() if "path" in e}
    assert len(requests) == 3  # two base images, one regenerated
    for request in requests:
        source, edited = request.images  # the source first, then the edit
        assert source.data == sources[critic.prompts[critic.prompt_of(request)]]
        assert sha(edited.data) in made
    assert len({sha(r.images[1].data) for r in requests}) == 3


def test_a_lora_generator_is_refined_with_its_lora(tiny: Callable[[str], Path], tmp_path: Path,
                                                    t2i: tuple[Refine, Critic]) -> None:
    from diffusers import FluxTransformer2DModel

    transformer = FluxTransformer2DModel.from_pretrained(tiny("flux") / "transformer")
    lora = tiny_diffusers.write_peft_folder(
        tiny_diffusers.peft_lora(transformer, ["to_q", "to_k", "to_v", "to_out.0"], rank=4, alpha=8),
        tmp_path / "lora")
    task_args = {"n": 2, "images_per_prompt": 1}
    critic = Critic(prompts(**task_args), lambda number, before: T2I_BASE[2] if (number, before) == (0, 0) else GOOD)
    with ScriptedJudge(critic) as server:
        refine = refine_in_process(tmp_path / "runs", server.url, "--task", "sanity-gen",
                                   *(f"-T{k}={v}" for k, v in task_args.items()), "--generator", "flux-dev",
                                   "-G", f"path={tiny('flux')}", "-G", f"lora={lora}", *FLUX)
    assert refine.outcomes() == {("t2i-0000-object", 0): "regenerated", ("t2i-0001-count", 0): "kept"}
    final_set_checks(refine, 2, {("t2i-0000-object", 0)})
    for stage in ("base", "regenerations", "finals"):
        settings = json.loads((refine.stage(stage) / "run.json").read_text())["generator"]["settings"]
        assert settings["lora"]["path"] == str(lora.resolve()), stage
    # the same request without the LoRA (the t2i refine's base image: same sample, index and seed) differs
    plain, plain_entry = t2i[0], t2i[0].images("base")[("t2i-0001-count", 0)]
    lora_entry = refine.images("base")[("t2i-0001-count", 0)]
    assert lora_entry["seed"] == plain_entry["seed"]
    assert refine.png("base", lora_entry) != plain.png("base", plain_entry)


# ----------------------------------------------------------------------------------- SIGKILL and resume
# official-demo (tests/plugins/official_demo.py) is sanity-gen's scenes judged by its own HTTP judge
# ("score: N"), so the judging stage runs against a server too: slow enough to be killed in, and a real gain.

DEMO_PLUGIN = str(Path(__file__).parent / "plugins" / "official_demo.py")
RESUME_N = 6
RESUME_PROMPTS = prompts(n=RESUME_N, images_per_prompt=1)
RESUME_REGENERATED = {0, 2, 4}
KILL_SEED = 16


def resume_script(number: int, before: int) -> str:
    """A function of the prompt alone (a resumed run may ask again for a critique that was in flight)."""
    if number in RESUME_REGENERATED:
        return answer({TF: 2, PVQ: 4, TR: NA}, f"{RESUME_PROMPTS[number]}\nDrawn larger,\ncentred on white.")
    return answer({TF: 4, PVQ: 3, TR: NA}, None)


def judge_score(request: Request) -> str:
    time.sleep(0.2)  # in flight long enough for a kill to land while the judge works
    return f"score: {int(sha(request.images[0].data)[:2], 16) % 5}"


def resume_args(tiny: Callable[[str], Path], out: Path, critic_url: str, judge_url: str) -> list[str]:
    return ["refine", "--task", "official-demo", "-T", f"n={RESUME_N}", "-T", "images_per_prompt=1",
            "--generator", "flux-dev", "-G", f"path={tiny('flux')}", *FLUX, *CRITIC, "--base-url", critic_url,
            "--judge-base-url", judge_url, "--output", str(out), "--no-cache", "--quiet"]


def stages(out: Path) -> dict[str, list[bool]]:
    """Whether each stage's run directory so far is complete, by kind (gen, critique, judge), in name order."""
    kinds = {"gen-flux-dev": "gen", "rationalrewards-8b": "critique", "gemini-2.5-pro": "judge"}
    found: dict[str, list[bool]] = {kind: [] for kind in kinds.values()}
    for run in sorted(out.glob("official-demo__*__*")):
        kind = kinds.get(run.name.split("__")[1])
        if kind is not None:
            record = run / "run.json"
            found[kind].append(record.is_file() and json.loads(record.read_text())["status"] == "complete")
    return found


def recorded_critiques(out: Path) -> set[str]:
    """sha256 of every image whose critique is recorded in a critique stage's log."""
    keys = set()
    for run in out.glob("official-demo__rationalrewards-8b__*"):
        for result in load_results(run):
            by_index = {e["index"]: e for e in result.candidates}
            keys |= {by_index[t.order[0]]["key"].removeprefix("sha256:") for t in result.trials if t.judgements}
    return keys


def kill_when(command: list[str], env: dict[str, str], cwd: Path, ready: Callable[[], bool]) -> None:
    """Start ``rrbench refine``, SIGKILL its process group as soon as ``ready()``."""
    log = cwd / "killed.log"
    with log.open("w") as err:
        proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
        deadline = time.monotonic() + 120
        try:
            while not ready():
                assert proc.poll() is None, f"refine ended before the kill point: {log.read_text()[-2000:]}"
                assert time.monotonic() < deadline, "the kill point never came"
                time.sleep(0.002)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture
def demo_env(cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("RRBENCH_PLUGINS", DEMO_PLUGIN)
    monkeypatch.setenv("GEMINI_API_KEY", "gm-test-not-a-key")
    registry.load_plugins()
    if registry.find("task", "official-demo") is None:
        registry._import_plugin(DEMO_PLUGIN, "test")
    return {**cli_env, "RRBENCH_PLUGINS": DEMO_PLUGIN, "GEMINI_API_KEY": "gm-test-not-a-key"}


@pytest.mark.slow
def test_sigkill_in_three_stages_resumes_to_the_uninterrupted_result(tiny: Callable[[str], Path], tmp_path: Path,
                                                                     demo_env: dict[str, str]) -> None:
    rng = random.Random(KILL_SEED)
    in_base = rng.randint(1, RESUME_N - 1)  # base critiques asked (the base set still being made or critiqued)
    in_regen = rng.randint(1, len(RESUME_REGENERATED) - 1)  # critiques of regenerated images asked
    in_judging = rng.randint(1, 2 * RESUME_N - 1)  # judge requests (base set, then the final set)
    critic, judge = Critic(RESUME_PROMPTS, resume_script, delay_s=0.1), ScriptedJudge(judge_score)
    out = tmp_path / "killed"
    asked_when_recorded: dict[str, int] = {}

    def snapshot() -> None:
        for key in recorded_critiques(out):
            asked_when_recorded.setdefault(key, critic.images[key])

    with ScriptedJudge(critic) as server, judge:
        command = [sys.executable, "-m", "rrbench.cli", *resume_args(tiny, out, server.url, judge.url)]
        kill_when(command, demo_env, tmp_path, lambda: critic.distinct_images() >= in_base)
        found = stages(out)  # killed while the base set was made or critiqued
        assert found["gen"] in ([False], [True]) and found["critique"] == [False] and found["judge"] == []
        snapshot()
        kill_when(command, demo_env, tmp_path, lambda: critic.distinct_images() >= RESUME_N + in_regen)
        found = stages(out)  # killed while the regenerated images were made or critiqued
        assert sorted(found["gen"]) == [False, True] and sorted(found["critique"]) == [False, True]
        assert found["judge"] == []
        snapshot()
        kill_when(command, demo_env, tmp_path, lambda: len(judge.requests) >= in_judging)
        found = stages(out)  # killed while the sets were judged
        assert found["gen"] == [True] * 3 and found["critique"] == [True] * 2 and False in found["judge"]
        assert not list(out.glob("*__refine-*/refine.json"))
        snapshot()
        done = subprocess.run(command, env=demo_env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    killed = Refine.read(out)

    # nothing made twice: one image-store line per (sample, index) in every generation stage
    indexes = list(out.glob("*/images/index.jsonl"))
    assert len(indexes) == 3  # the base set, the regenerated images, the final set
    for index in indexes:
        made = Counter((e["id"], e["index"]) for e in map(json.loads, index.read_text().splitlines()))
        assert made and max(made.values()) == 1, index
    # no recorded critique asked again; an image whose critique was in flight at a kill was asked twice at most
    assert len(asked_when_recorded) >= in_base
    assert {key: critic.images[key] for key in asked_when_recorded} == asked_when_recorded
    assert len(critic.images) == RESUME_N + len(RESUME_REGENERATED) and max(critic.images.values()) <= 2

    reference_critic = Critic(RESUME_PROMPTS, resume_script)
    with ScriptedJudge(reference_critic) as server, ScriptedJudge(judge_score) as reference_judge:
        assert cli.main(resume_args(tiny, tmp_path / "whole", server.url, reference_judge.url)) == 0
    reference = Refine.read(tmp_path / "whole")
    assert sorted(reference_critic.images.values()) == [1] * (RESUME_N + len(RESUME_REGENERATED))
    assert len(reference_judge.requests) == 2 * RESUME_N
    assert killed.summary == reference.summary  # every stage named alike, the same numbers
    assert killed.summary["rounds"][0]["overall"]["gain"] is not None
    assert killed.summary["images"]["by_outcome"] == {"kept": 3, "regenerated": 3}


# ----------------------------------------------------------------------------------- transformers serve


@pytest.mark.slow
def test_a_random_weight_critic_over_transformers_serve_keeps_every_base_image(
        tiny: Callable[[str], Path], tmp_path: Path, tiny_vlm: Path, vlm_server: str) -> None:
    """Random weights write no critique (junk, cut at max_tokens): no slot has a critique to regenerate from."""
    out = tmp_path / "runs"
    code = cli.main(["refine", "--task", "sanity-gen", "-T", "n=2", "-T", "images_per_prompt=1", "--generator",
                     "flux-dev", "-G", f"path={tiny('flux')}", *FLUX, "--critic", "rationalrewards-8b",
                     "-M", f"path={tiny_vlm}", "-M", "max_tokens=24", "--base-url", vlm_server,
                     "--model", "sanity-gen-judge", "--output", str(out), "--no-cache", "--quiet"])
    assert code == 0
    refine = Refine.read(out)
    assert refine.outcomes() == {("t2i-0000-object", 0): "critic-failed", ("t2i-0001-count", 0): "critic-failed"}
    assert refine.summary["images"]["by_outcome"] == {"critic-failed": 2}
    assert refine.summary["stages"]["regenerations"] == [] and len(refine.summary["stages"]["judges"]) == 2
    final_set_checks(refine, 2, set())
    (critique,) = refine.summary["stages"]["critiques"]
    trials = [t for r in load_results(out / critique) for t in r.trials]
    assert len(trials) == 2
    for trial in trials:
        # cut at max_tokens (random weights rarely stop) or, if they stop, unreadable; the junk answer is kept
        assert trial.failure in (FailureKind.TRUNCATED, FailureKind.PARSE) and trial.judgements[0].raw
    for stage in (refine.stage("base"), out / critique, refine.stage("finals"), *map(out.joinpath,
                  refine.summary["stages"]["judges"])):
        assert json.loads((stage / "run.json").read_text())["status"] == "complete", stage
