"""The lm-evaluation-harness bridge end to end: `rrbench export lm-eval`, lm-eval itself, `rrbench import lm-eval`.

Small copies of GenAI-Bench (t2i) and MMRB2 (t2i) in their hub schema (HF ``Image`` features, the layout
``rrbench run --data`` reads) hold noise images at set brightness. lm-eval runs the exported pack offline, in
process (its python API; the samples file is written by its own EvaluationTracker, as ``--log_samples`` does):

* ``hf-multimodal`` with the tiny random-weight Qwen3-VL: junk answers (parse failures), each checked to have been
  asked with the very prompt rrbench sends (the model's chat template applied to rrbench's request);
* ``local-chat-completions`` against a scripted judge on 127.0.0.1 that answers in each benchmark's format from the
  images' brightness, so verdicts are parsed, ties and failures included.

The expected side is rrbench's own run path: ``rrbench run`` with a generic VLM judge whose server replays, for
each request, the answer lm-eval recorded for that document (found by the fixture's own image bytes), or the same
scripted judge. Imported runs must equal those runs: counts, every metric with its CI, every trial's prediction.
The scripted judge's accuracies are also worked out by hand below.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from rrbench import cli
from tests.judge_server import Request, ScriptedJudge
from tests.test_task_genai_bench import write_parquet

GENAI = "genai-bench-t2i"
MMRB2 = "mmrb2-t2i"
# (left level, right level, vote_type); the scripted judge prefers the brighter image, calls equal levels a tie
# (good at or above 128, bad below) and gives no verdict when both are below 50.
GENAI_ROWS = [
    (200, 60, "leftvote"),  # g0: [[A>B]], right
    (60, 200, "rightvote"),  # g1: [[B>A]], right
    (150, 150, "tievote"),  # g2: [[A=B=Good]], right
    (40, 40, "bothbad_vote"),  # g3: no verdict -> parse failure, counted wrong (GenAI-Bench's failure policy)
    (60, 200, "leftvote"),  # g4: [[B>A]], wrong
    (100, 90, "skipvote"),  # g5: unknown vote: label-skipped, never asked
]
GENAI_ACC = 3 / 5
# (A level, B level, chosen), judged in both orders (MMRB2's protocol)
MMRB2_ROWS = [
    (200, 60, "A"),  # m0: A forward, A after mapping the reversed answer back: 2 of 2 right
    (200, 60, "B"),  # m1: 0 of 2
    (60, 200, "A"),  # m2: 0 of 2
    (90, 80, ""),  # m3: unknown label
]
MMRB2_ACC = 2 / 6


def png(level: int, seed: int) -> bytes:
    pixels = np.clip(np.random.default_rng(seed).normal(level, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Copies:
    """The two local copies, and each sample's candidate bytes as the fixture wrote them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.images: dict[tuple[str, str], tuple[bytes, bytes]] = {}
        genai = [(png(a, 100 + i), png(b, 200 + i)) for i, (a, b, _) in enumerate(GENAI_ROWS)]
        write_parquet(root / "genai" / "image_generation" / "test_v1-00000-of-00001.parquet", {
            "prompt": [f"a photo, row {i}" for i in range(len(GENAI_ROWS))],
            "left_model": ["m"] * len(GENAI_ROWS), "left_image": [{"bytes": a, "path": None} for a, _ in genai],
            "right_model": ["n"] * len(GENAI_ROWS), "right_image": [{"bytes": b, "path": None} for _, b in genai],
            "vote_type": [v for _, _, v in GENAI_ROWS]}, images=("left_image", "right_image"))
        self.images.update({(GENAI, f"{i:05d}"): pair for i, pair in enumerate(genai)})
        mmrb2 = [(png(a, 300 + i), png(b, 400 + i)) for i, (a, b, _) in enumerate(MMRB2_ROWS)]
        n = len(MMRB2_ROWS)
        write_parquet(root / "mmrb2" / "t2i" / "test-00000-of-00001.parquet", {
            "pair_id": [f"m{i}" for i in range(n)], "prompt_text": [f"a photo, pair {i}" for i in range(n)],
            "prompt_images": [[] for _ in range(n)],
            "response_a_images": [[{"bytes": a, "path": None}] for a, _ in mmrb2],
            "response_b_images": [[{"bytes": b, "path": None}] for _, b in mmrb2],
            "chosen": [c for _, _, c in MMRB2_ROWS], "response_a_text": [""] * n, "response_b_text": [""] * n,
            "prompt_source": ["oneig", "oneig", "wise", "wise"], "response_a_model": ["x"] * n,
            "response_b_model": ["y"] * n, "human_annotations": ["{}"] * n, "prompt_metadata": ["{}"] * n,
        }, image_lists=("prompt_images", "response_a_images", "response_b_images"))
        self.images.update({(MMRB2, f"m{i}"): pair for i, pair in enumerate(mmrb2)})

    def data(self, task: str) -> Path:
        return self.root / ("genai" if task == GENAI else "mmrb2")


def lm(task: str) -> str:
    return "rrbench_" + task.replace("-", "_")


def main(*args: str) -> int:
    return cli.main(list(args))


# --------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    mp = pytest.MonkeyPatch()
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        mp.setenv(name, "1")
    mp.setenv("RRBENCH_CACHE", str(tmp_path_factory.mktemp("cache") / "c.sqlite"))
    yield tmp_path_factory.mktemp("lmeval")
    mp.undo()


@pytest.fixture(scope="module")
def copies(offline: Path) -> Copies:
    return Copies(offline / "data")


@pytest.fixture(scope="module")
def pack(copies: Copies, offline: Path) -> Path:
    out = offline / "pack"
    for task in (GENAI, MMRB2):  # one pack, two local copies: each task's YAML points at its own
        assert main("export", "lm-eval", str(out), "--task", task, "--data", str(copies.data(task))) == 0
    return out


@pytest.fixture(scope="module")
def manager(pack: Path) -> Any:
    """lm-eval's task index of the pack alone (indexing its thousands of built-in tasks takes most of a minute)."""
    from lm_eval.tasks import TaskManager


    return TaskManager(include_path=str(pack), include_defaults=False)


def evaluate(manager: Any, out: Path, model: str, model_args: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """lm-eval on both tasks, its samples files written by its own tracker; returns simple_evaluate's result."""
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker

    result = simple_evaluate(model=model, model_args=model_args, tasks=[lm(GENAI), lm(MMRB2)],
                             task_manager=manager, apply_chat_template=True,
                             log_samples=True, batch_size=1, bootstrap_iters=0, **kwargs)
    assert result is not None
    samples = result.pop("samples")
    tracker = EvaluationTracker(output_path=str(out / "results.json"))  # as `lm_eval --log_samples` saves them
    tracker.save_results_aggregated(results=result, samples=samples)
    for task in (GENAI, MMRB2):
        tracker.save_results_samples(task_name=lm(task), samples=samples[lm(task)])
    return result


def samples_file(out: Path, task: str) -> Path:
    (found,) = out.glob(f"samples_{lm(task)}_*.jsonl")
    return found


def imported(samples: Path, task: str, copies: Copies, runs: Path) -> dict[str, Any]:
    assert main("import", "lm-eval", str(samples), "--task", task, "--data", str(copies.data(task)),
                "--output", str(runs)) == 0
    (run_dir,) = runs.glob(f"{task}__lm-eval__*")
    return {"record": json.loads((run_dir / "run.json").read_text()), "samples": log(run_dir)}


def own_run(task: str, copies: Copies, url: str, runs: Path) -> dict[str, Any]:
    """rrbench's own path: a generic VLM judge (GenAI-Bench's / MMRB2's own prompt) over HTTP."""
    assert main("run", "--task", task, "--data", str(copies.data(task)), "--model", "qwen3-vl-8b",
                "--base-url", url, "-M", "served_model=judge", "--no-cache", "--quiet", "--output", str(runs)) == 0
    (run_dir,) = runs.glob(f"{task}__qwen3-vl-8b__*")
    return {"record": json.loads((run_dir / "run.json").read_text()), "samples": log(run_dir)}


def log(run_dir: Path) -> dict[str, Any]:
    lines = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines() if x.strip()]
    return {x["id"]: x for x in lines}


def assert_same_numbers(mine: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert mine["record"]["counts"] == theirs["record"]["counts"]
    assert mine["record"]["metrics"] == theirs["record"]["metrics"]
    assert mine["record"]["protocol"] == theirs["record"]["protocol"]
    assert sorted(mine["samples"]) == sorted(theirs["samples"])
    for sample_id, line in theirs["samples"].items():
        other = mine["samples"][sample_id]
        assert other.get("skipped") == line.get("skipped") and other.get("failure") == line.get("failure")
        assert [(t["order"], t.get("prediction"), t.get("failure")) for t in other["trials"]] == \
               [(t["order"], t.get("prediction"), t.get("failure")) for t in line["trials"]]
        assert [j.get("raw") for t in other["trials"] for j in t["judgements"]] == \
               [j.get("raw") for t in line["trials"] for j in t["judgements"]]


def headline(record: dict[str, Any]) -> float | None:
    policy = record["protocol"]["failure_policy"]
    row = next(r for r in record["metrics"]["overall"] if r["metric"] == "accuracy" and r["failure_policy"] == policy)
    return row["value"]


# --------------------------------------------------------------------------------------------------- tests


def test_pack_is_valid_lm_eval(manager: Any, copies: Copies) -> None:
    # `lm_eval validate --tasks T --include_path DIR` is TaskManager(include_path=DIR).match_tasks(T), failing on
    # a task not found (lm_eval/_cli/validate.py); done here on the pack's index alone, as the command would
    # spend half a minute indexing lm-eval's own tasks first (run by hand: "All tasks found and valid").
    names = [lm(GENAI), lm(MMRB2)]
    assert manager.match_tasks([*names, "rrbench_no_such_task"]) == names
    # ... and what it leaves out: each task built by lm-eval, with its documents, text and images
    tasks = manager.load([lm(GENAI), lm(MMRB2)])["tasks"]
    for task, rows, trials in ((GENAI, GENAI_ROWS, 1), (MMRB2, MMRB2_ROWS, 2)):
        built = tasks[lm(task)]
        docs = list(built.test_docs())
        assert len(docs) == (len(rows) - 1) * trials  # the unknown label is never asked
        assert [d["order"] for d in docs][:trials] == ([[0, 1]] if trials == 1 else [[0, 1], [1, 0]])
        for doc in docs:
            text, images = built.doc_to_text(doc), built.doc_to_image(doc)
            assert text.count("<image>") == len(images) == 2
            shown = [copies.images[task, doc["id"]][i] for i in doc["order"]]
            assert [np.asarray(im).tobytes() for im in images] == \
                   [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")).tobytes() for b in shown]
        assert built.config.metadata["rrbench_data"] == str(copies.data(task).resolve())
    assert "tie=genai-4way" in tasks[lm(GENAI)].config.metadata["version"]
    assert "order=both" in tasks[lm(MMRB2)].config.metadata["version"]


def test_hf_multimodal_answers_give_rrbench_numbers(manager: Any, copies: Copies, offline: Path,
                                                     tiny_vlm: Path) -> None:
    from transformers import AutoProcessor

    out = offline / "hf"
    result = evaluate(manager, out, "hf-multimodal", {"pretrained": str(tiny_vlm), "max_length": 4096},
                      device="cpu", gen_kwargs={"max_gen_toks": 8})
    # what lm-eval asked and answered, by the fixture's own image bytes in the order shown
    asked: dict[tuple[str, ...], tuple[str, str]] = {}
    for task in (GENAI, MMRB2):
        for line in map(json.loads, samples_file(out, task).read_text().splitlines()):
            doc = line["doc"]
            shown = tuple(digest(copies.images[task, doc["id"]][i]) for i in doc["order"])
            asked[shown] = (line["filtered_resps"][0], line["arguments"]["gen_args_0"]["arg_0"])

    def replay(request: Request) -> str:
        return asked[tuple(digest(im.data) for im in request.images)][0]

    processor = AutoProcessor.from_pretrained(tiny_vlm)
    for task in (GENAI, MMRB2):
        with ScriptedJudge(replay) as judge:
            theirs = own_run(task, copies, judge.url, offline / "hf-own")
        for request in judge.requests:  # lm-eval's model saw rrbench's prompt, images where rrbench puts them
            messages = [{"role": m["role"], "content": [{"type": "image"} if p["type"] == "image_url" else p
                                                        for p in m["content"]]} for m in request.body["messages"]]
            templated = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            assert templated == asked[tuple(digest(im.data) for im in request.images)][1]
        mine = imported(samples_file(out, task), task, copies, offline / "hf-imported")
        assert_same_numbers(mine, theirs)
        assert mine["record"]["counts"]["recorded"] == len(GENAI_ROWS if task == GENAI else MMRB2_ROWS)
        value = headline(theirs["record"])
        reported = result["results"][lm(task)]["acc,none"]
        assert (value is None and reported != reported) or reported == pytest.approx(value)


def verdict(request: Request) -> str:
    """A judge that answers each benchmark's own format from the two images' brightness (never from the text)."""
    a, b = (float(np.asarray(Image.open(io.BytesIO(im.data)).convert("L")).mean()) for im in request.images[-2:])
    json_answer = "better_response" in request.text
    if max(a, b) < 50:
        return "I cannot tell these apart."
    if abs(a - b) < 5:
        return "Comparable. [[A=B=Good]]" if a >= 128 else "Comparable. [[A=B=Bad]]"
    if json_answer:
        return json.dumps({"reasoning": "brighter", "better_response": "A" if a > b else "B"})
    return "Brighter wins. " + ("[[A>B]]" if a > b else "[[B>A]]")


@pytest.fixture(scope="module")
def api_run(manager: Any, offline: Path) -> Iterator[tuple[dict[str, Any], Path, ScriptedJudge, int]]:
    """lm-eval's local-chat-completions against the scripted judge (kept serving for rrbench's own runs)."""
    out = offline / "api"
    with ScriptedJudge(verdict) as judge:
        result = evaluate(manager, out, "local-chat-completions",
                          {"model": "judge", "base_url": f"{judge.url}/chat/completions", "max_images": 8,
                           "num_concurrent": 1, "max_retries": 1})
        yield result, out, judge, len(judge.requests)


def test_api_route_parsed_verdicts_give_rrbench_numbers(
    api_run: tuple[dict[str, Any], Path, ScriptedJudge, int], copies: Copies, offline: Path
) -> None:
    result, out, judge, n_api = api_run
    expected = {GENAI: GENAI_ACC, MMRB2: MMRB2_ACC}
    for task in (GENAI, MMRB2):
        theirs = own_run(task, copies, judge.url, offline / "api-own")
        mine = imported(samples_file(out, task), task, copies, offline / "api-imported")
        assert_same_numbers(mine, theirs)
        assert headline(mine["record"]) == pytest.approx(expected[task])
        assert result["results"][lm(task)]["acc,none"] == pytest.approx(expected[task])
    # the API route is not rrbench's request: its images come first, the text keeps lm-eval's markers
    api, own = judge.requests[:n_api], judge.requests[n_api:]
    assert all(r.parts[:2] == ["<image>", "<image>"] and "<image>" in r.parts[2] for r in api)
    assert own and all(r.parts[0] != "<image>" for r in own)


def test_bad_input_is_one_line(api_run: tuple[dict[str, Any], Path, ScriptedJudge, int], copies: Copies,
                               tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = api_run[1]
    genai_samples = samples_file(out, GENAI)

    def fails(*args: str, says: str) -> None:
        capsys.readouterr()
        assert main(*args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and says in err, err

    fails("import", "lm-eval", str(genai_samples), "--task", MMRB2, "--data", str(copies.data(MMRB2)),
          "--output", str(tmp_path), says="not 'mmrb2-t2i'")
    fails("import", "lm-eval", str(genai_samples), "--task", "no-such-task", says="unknown task")
    fails("import", "lm-eval", str(genai_samples), "--task", GENAI, "--output", str(tmp_path), says="--data")
    other = tmp_path / "other.jsonl"
    other.write_text('{"doc_id": 0, "doc": {"question": "?"}, "filtered_resps": ["x"]}\n')
    fails("import", "lm-eval", str(other), "--task", GENAI, "--data", str(copies.data(GENAI)),
          says="not from an rrbench task pack")
    other.write_text("not json\n")
    fails("import", "lm-eval", str(other), "--task", GENAI, says="not JSON")
    lines = genai_samples.read_text().splitlines()
    first = json.loads(lines[0])
    first["doc"]["id"] = "../../etc/passwd"
    other.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    fails("import", "lm-eval", str(other), "--task", GENAI, "--data", str(copies.data(GENAI)),
          "--output", str(tmp_path), says="not in genai-bench-t2i's data")
    fails("import", "lm-eval", str(tmp_path / "missing.jsonl"), "--task", GENAI, says="cannot read")
    fails("export", "lm-eval", str(tmp_path / "p"), "--task", "hpdv2", says="no lm-eval form")
    fails("export", "lm-eval", str(tmp_path / "p"), "--task", "nope", says="unknown task")
    fails("export", "lm-eval", str(tmp_path / "p"), "--data", str(copies.data(GENAI)), says="one task")
    assert not list(tmp_path.glob("*__lm-eval__*"))  # nothing half-written
