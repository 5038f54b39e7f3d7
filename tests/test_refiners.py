"""The refine baselines: `identity` (the benchmark prompt again, a new seed) and `prompt-enhancer` (a blind text-only
rewrite), the latter against real OpenAI-compatible servers on 127.0.0.1 (a scripted one, and `transformers serve`
of the tiny random Qwen3-VL)."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from PIL import Image
from skimage import data as skdata

from rrbench import registry
from rrbench.models._base import RewardModel
from rrbench.models.prompt_enhancer import ASK, SYSTEM, answer_text
from rrbench.types import FailureKind, Judgement, Media, Query, UserError
from tests.fault_proxy import FaultProxy
from tests.judge_server import Reply, Request, ScriptedJudge

KEY_ENV = "RRBENCH_TEST_ENHANCER_KEY"
KEY = "sk-enhancer-test-0123456789abcdef"
T2I_PROMPT = "a red cube left of a blue sphere"
EDIT_PROMPT = "make the cat's fur {purple}"  # braces: text, never a format placeholder


def _photo(name: str) -> Media:
    buffer = io.BytesIO()
    Image.fromarray(getattr(skdata, name)()).save(buffer, format="PNG")
    return Media.from_bytes(buffer.getvalue(), "png")


def _queries() -> list[Query]:
    """A text-to-image query and an editing one, each with real photographs (that a blind rewriter must not send)."""
    astronaut, cat, coffee = _photo("astronaut"), _photo("chelsea"), _photo("coffee")
    return [
        Query(prompt=T2I_PROMPT, candidates=(astronaut,), generation="t2i", sample_id="t2i-0"),
        Query(prompt=EDIT_PROMPT, candidates=(coffee,), source=(cat,), generation="edit", sample_id="edit-0",
              variables=(("request", "an earlier round's rewrite"),)),
    ]


def _model(name: str, **args: object) -> RewardModel:
    model = registry.get("model", name).build(**args)
    assert isinstance(model, RewardModel)
    return model


def _score(model: RewardModel, queries: Sequence[Query], generation: str = "t2i") -> list[Judgement]:
    """The refine protocol's calls: start, ascore, close."""
    async def main() -> list[Judgement]:
        await model.astart(generation)
        try:
            return await model.ascore(queries)
        finally:
            await model.aclose()

    return asyncio.run(main())


# ------------------------------------------------------------------------------------------------ identity


def test_identity_returns_the_benchmark_prompt_exactly_and_decides_nothing() -> None:
    model = _model("identity")
    odd = "  two lines,\n{braces} kept as they are  "
    queries = [*_queries(), Query(prompt=odd, candidates=(_photo("camera"),))]
    judgements = model.score(queries)
    # the benchmark prompt, not the earlier round's request the edit query carries
    assert [j.refined_prompt for j in judgements] == [T2I_PROMPT, EDIT_PROMPT, odd]
    assert all(j.aspects == () and j.scores == () and j.verdict is None and j.ok for j in judgements)
    assert {j.rationale for j in judgements} == {"identity refiner: the same prompt, a new seed"}
    assert _score(model, queries[:1]) == judgements[:1]  # the async path the refine protocol takes says the same


def test_identity_attributes_tell_refine_to_redraw_with_a_new_seed() -> None:
    model = _model("identity")
    assert (model.refiner_only, model.new_seed_on_refine, model.cacheable) == (True, True, False)
    assert model.can_score and not model.can_compare and not model.can_chat
    assert model.batch_size >= 16
    with pytest.raises(UserError, match="has no argument 'seed'"):
        _model("identity", seed=1)


# ------------------------------------------------------------------------------------------------ prompt-enhancer


def _rewrite(request: Request) -> str | Reply:
    """Answers as a rewriter would: one rewrite per instruction kind, with whitespace around it to strip."""
    if T2I_PROMPT in request.text:
        return "\n  A glossy red cube on the left, a matte blue sphere on the right, white background.  \n"
    return "Recolour the cat's fur to purple; keep the background and pose unchanged."


def test_prompt_enhancer_sends_the_prompt_text_only_with_its_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    with ScriptedJudge(_rewrite) as server:
        model = _model("prompt-enhancer", base_urls=[server.url], served_model="rewriter", api_key_env=KEY_ENV)
        t2i, edit = _score(model, _queries()[:1]) + _score(model, _queries()[1:], "edit")
    assert t2i.refined_prompt == "A glossy red cube on the left, a matte blue sphere on the right, white background."
    assert t2i.raw == "\n  A glossy red cube on the left, a matte blue sphere on the right, white background.  \n"
    assert edit.refined_prompt == "Recolour the cat's fur to purple; keep the background and pose unchanged."
    assert all(j.ok and j.aspects == () and j.scores == () and j.flags == () for j in (t2i, edit))
    assert t2i.usage == {"prompt_tokens": 10, "completion_tokens": 22}  # the scripted server: 88 characters // 4
    first, second = server.requests
    assert first.images == [] and second.images == []  # blind: neither the image nor the edit's source travels
    assert first.roles == second.roles == ["system", "user"]
    assert first.texts == [SYSTEM["t2i"], f"{ASK['t2i']}\n\nPrompt:\n{T2I_PROMPT}"]
    # the benchmark instruction is rewritten, not an earlier round's request
    assert second.texts == [SYSTEM["edit"], f"{ASK['edit']}\n\nInstruction:\n{EDIT_PROMPT}"]
    body = first.body
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("rewriter", 0.0, 1024)
    assert "top_p" not in body and "seed" not in body


def test_prompt_enhancer_failures_are_per_request_and_kept_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    replies: dict[str, str | Reply] = {
        "empty": Reply("  \n "), "cut": Reply("A very long rewrite that ran out of", finish="length"),
        "down": Reply(f"internal error, key {KEY}", status=500), "echo": f"A cat. (sent with {KEY})",
        "think": "<think>blue or purple?</think>\nA purple cat.",
    }

    def answer(request: Request) -> str | Reply:
        return next(reply for word, reply in replies.items() if f"\n{word}" in request.text)

    queries = [Query(prompt=word, candidates=(_photo("astronaut"),)) for word in replies]
    with ScriptedJudge(answer) as server:
        model = _model("prompt-enhancer", base_urls=[server.url], api_key_env=KEY_ENV, max_retries=0)
        empty, cut, down, echo, think = _score(model, queries)
    assert (empty.failure, empty.refined_prompt, empty.raw) == (FailureKind.EMPTY, None, "  \n ")
    assert (cut.ok, cut.refined_prompt, cut.flags) == (True, "A very long rewrite that ran out of", ("truncated",))
    assert down.failure is FailureKind.HTTP and "HTTP 500" in (down.failure_detail or "")
    assert echo.refined_prompt == "A cat. (sent with [redacted])"
    assert think.refined_prompt == "A purple cat."
    stored = json.dumps([j.to_json() for j in (empty, cut, down, echo, think)])
    assert KEY not in stored and KEY not in json.dumps(model.describe())


def test_prompt_enhancer_is_a_refiner_whose_fingerprint_follows_weights_and_decoding() -> None:
    def fingerprint(**args: object) -> str:
        return _model("prompt-enhancer", **args).fingerprint()

    model = _model("prompt-enhancer", base_urls=["http://127.0.0.1:9/v1"])
    assert (model.refiner_only, model.new_seed_on_refine, model.cacheable) == (True, False, True)
    assert model.can_score and not model.can_compare and not model.can_chat
    base = fingerprint(base_urls=["http://127.0.0.1:9/v1"])
    assert base == fingerprint(base_urls=["http://127.0.0.2:9/v1"])  # where it is served changes no answer
    changed = [fingerprint(base_urls=["http://127.0.0.1:9/v1"], **{k: v}) for k, v in (
        ("served_model", "other"), ("path", "/weights/other"), ("temperature", 0.7), ("max_tokens", 64),
        ("top_p", 0.9))]
    assert len({base, *changed}) == 6
    assert set(model.describe()["config"]) >= {"weights", "served_model", "temperature", "max_tokens"}
    assert "mode" not in model.describe()["config"]  # a critique's settings are not a rewrite's


def test_answer_text_drops_a_reasoning_block_and_whitespace_only() -> None:
    assert answer_text("  <think>\nplan\n</think>\n\nA cat.\n") == "A cat."
    assert answer_text("A cat <think>aside</think> on a mat") == "A cat <think>aside</think> on a mat"
    assert answer_text("<think>never closed") == "<think>never closed"
    assert answer_text("\n\t ") == ""


@pytest.mark.slow
def test_prompt_enhancer_round_trips_through_transformers_serve(tiny_vlm: Path, vlm_server: str) -> None:
    with FaultProxy(vlm_server) as proxy:  # no faults: it only records what was sent
        model = _model("prompt-enhancer", base_urls=[proxy.url], served_model=str(tiny_vlm), max_tokens=8)
        (judgement,) = _score(model, _queries()[1:], "edit")
        bodies = [json.loads(hit.request.body) for hit in proxy.hits if hit.request.method == "POST"]
    # random weights write junk: a rewrite of some text, or a clean failure, never an exception
    assert (judgement.ok and bool(judgement.refined_prompt)) or judgement.failure is FailureKind.EMPTY
    assert judgement.ok or judgement.refined_prompt is None
    assert len(bodies) == 1 and "image_url" not in json.dumps(bodies[0])
    assert bodies[0]["max_tokens"] == 8 and bodies[0]["messages"][1]["content"][0]["text"].endswith(EDIT_PROMPT)


@pytest.mark.slow
def test_prompt_enhancer_runs_in_process_without_reading_any_image(tiny_vlm: Path) -> None:
    # Images that fail whoever reads them: a rewrite that comes back proves the engine never touched them.
    unreadable = Media.unavailable("gone/1", "this image must never be read")
    query = Query(prompt=T2I_PROMPT, candidates=(unreadable,), source=(unreadable,))
    model = _model("prompt-enhancer", path=str(tiny_vlm), engine="transformers", device="cpu", max_tokens=8)
    (judgement,) = _score(model, [query])
    assert judgement.failure is not FailureKind.DATA
    assert (judgement.ok and bool(judgement.refined_prompt)) or judgement.failure is FailureKind.EMPTY
    assert judgement.usage is None or judgement.usage["completion_tokens"] <= 8
