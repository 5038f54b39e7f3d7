"""Transport faults between rrbench and a real server, injected by a proxy (tests/fault_proxy.py).

The server is `transformers serve` of the tiny random-weight Qwen3-VL; the proxy injects 5xx, timeouts, 429 with
Retry-After, truncated bodies and dropped connections. Client tests check that each fault becomes the right
FailureKind once retries are used up and is invisible when a retry is allowed; the end-to-end test checks that a
faulty run finishes with every sample recorded once, with the kind the proxy caused, and that a resumed run asks
the server again for exactly the failed samples.

Random weights never write a valid critique, so forwarded answers end as ``parse`` or ``truncated`` (max_tokens
reached), never as transport kinds; where a sample must succeed, the proxy swaps the server's text for a valid
critique in the server's real response.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from rrbench.backends._base import BackendError, Completion, Message, Sampling, image_part, text_part, user_message
from rrbench.backends.openai_http import OpenAIHTTPBackend
from rrbench.types import FailureKind, Sample
from tasks.sanity import sanity
from tests.conftest import rrbench
from tests.fault_proxy import FAULTS, FaultProxy, Hit, Request, by_number, seeded

GREEDY = Sampling(temperature=0.0, max_tokens=8)
TIMEOUT_S = 2.0  # the client's timeout: a forwarded request to the warm tiny model answers in about 0.2 s
# A transport fault is an http failure except where the protocol says more; a body cut short is a broken
# transfer (http, retried), not FailureKind.TRUNCATED, which means the model's own output hit max_tokens.
KIND = {"5xx": FailureKind.HTTP, "timeout": FailureKind.TIMEOUT, "429": FailureKind.RATE_LIMITED,
        "truncated": FailureKind.HTTP, "drop": FailureKind.HTTP}
MODEL_TEXT_KINDS = {"parse", "truncated"}  # what the random model's own answers end as
VALID = (
    "# Detailed Judgement\n1. Text Faithfulness:\n## Score A: 4\n## Score B: 2\n## Winner: Image A\n"
    "2. Physical and Visual Quality:\n## Score A: 3\n## Score B: 3\n## Winner: tie\n"
    "3. Text Rendering:\n## Score A: N/A\n## Score B: N/A\n## Winner: N/A\n# Summary: A follows the prompt.\n"
)


def _conversation(sample: Sample) -> list[Message]:
    return [user_message(text_part(sample.prompt), image_part(sample.candidates[0]), image_part(sample.candidates[1]))]


def _chat(url: str, model: str, conversations: Sequence[Sequence[Message]], **kwargs: float) -> list[object]:
    """Each conversation's Completion, or the BackendError it ended with."""

    async def main() -> list[object]:
        options = {"timeout_s": TIMEOUT_S, "backoff_s": 0.01, **kwargs}
        backend = OpenAIHTTPBackend([url], model, **options)  # type: ignore[arg-type]
        try:
            return list(await asyncio.gather(*(backend.chat(c, GREEDY) for c in conversations),
                                             return_exceptions=True))
        finally:
            await backend.close()

    return asyncio.run(main())


def _images(request: Request) -> frozenset[str]:
    """The sha256 of each image a chat request carries: which sample it is, whatever the model path."""
    body = json.loads(request.body)
    urls = [part["image_url"]["url"] for m in body["messages"] if isinstance(m["content"], list)
            for part in m["content"] if part["type"] == "image_url"]
    return frozenset(hashlib.sha256(base64.b64decode(u.split(",", 1)[1])).hexdigest() for u in urls)


def _by_conversation(hits: list[Hit]) -> dict[frozenset[str], list[Hit]]:
    out: dict[frozenset[str], list[Hit]] = {}
    for hit in hits:
        out.setdefault(_images(hit.request), []).append(hit)
    return out


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    return list(sanity(n=8).load(None))


@pytest.fixture(scope="module")
def reference(vlm_server: str, tiny_vlm: Path, samples: list[Sample]) -> str:
    """The server's own greedy answer to the first sample, without the proxy (this also warms the server up)."""
    (completion,) = _chat(vlm_server, str(tiny_vlm), [_conversation(samples[0])], max_retries=0)
    assert isinstance(completion, Completion), completion
    return completion.text


@pytest.fixture
def proxy(vlm_server: str) -> Iterator[FaultProxy]:
    with FaultProxy(vlm_server) as running:
        yield running


# ---------------------------------------------------------------------------------------------------- client


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
def test_a_fault_is_its_failure_kind_when_no_retry_is_left(
    fault: str, proxy: FaultProxy, tiny_vlm: Path, samples: list[Sample], reference: str
) -> None:
    proxy.plan = by_number({1: fault})
    (result,) = _chat(proxy.url, str(tiny_vlm), [_conversation(samples[0])], max_retries=0)
    assert isinstance(result, BackendError), result
    assert result.kind is KIND[fault]
    assert [h.fault for h in proxy.hits] == [fault]  # no retry was sent


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
def test_one_retry_recovers_from_each_fault_transparently(
    fault: str, proxy: FaultProxy, tiny_vlm: Path, samples: list[Sample], reference: str
) -> None:
    proxy.plan = by_number({1: fault})
    (result,) = _chat(proxy.url, str(tiny_vlm), [_conversation(samples[0])], max_retries=1)
    assert isinstance(result, Completion), result
    assert result.text == reference  # the server's real answer, as if nothing had happened
    first, retry = proxy.hits
    assert (first.fault, retry.fault) == (fault, None)
    assert retry.request.body == first.request.body and retry.request.attempt == 1


@pytest.mark.slow
@pytest.mark.parametrize("retry_after", [0, 1])
def test_429_retry_waits_for_retry_after_not_for_backoff(
    retry_after: int, vlm_server: str, tiny_vlm: Path, samples: list[Sample], reference: str
) -> None:
    # The client's own backoff is set far from Retry-After, so only honouring the header passes both cases.
    backoff = 0.0001 if retry_after else 60.0
    with FaultProxy(vlm_server, by_number({1: "429"}), retry_after=retry_after) as proxy:
        (result,) = _chat(proxy.url, str(tiny_vlm), [_conversation(samples[0])], max_retries=1, backoff_s=backoff)
    assert isinstance(result, Completion), result
    first, retry = proxy.hits
    waited = retry.at - first.at
    assert retry_after <= waited < retry_after + 0.9, waited


def _messages_key(request: Request) -> bytes:
    return json.dumps(json.loads(request.body)["messages"]).encode()  # the model's path changes per session


@pytest.mark.slow
def test_seeded_fault_mix_under_concurrency_ends_in_answers_or_the_last_faults_kind(
    proxy: FaultProxy, tiny_vlm: Path, samples: list[Sample], reference: str
) -> None:
    mix = {"5xx": 0.15, "timeout": 0.1, "429": 0.15, "truncated": 0.1, "drop": 0.15}
    proxy.plan = seeded(mix, seed=1, key=_messages_key)
    chosen = samples[:6]
    results = _chat(proxy.url, str(tiny_vlm), [_conversation(s) for s in chosen], max_retries=2,
                    concurrency=3)  # few enough in flight that no forwarded request nears the timeout
    hits = _by_conversation(proxy.hits)
    outcomes: Counter[str] = Counter()
    for sample, result in zip(chosen, results, strict=True):
        mine = hits[frozenset(m.sha256 for m in sample.candidates)]
        assert [h.request.attempt for h in mine] == list(range(len(mine)))
        last = mine[-1].fault
        if last is None:
            assert isinstance(result, Completion), result
            assert all(h.fault for h in mine[:-1]) and len(mine) <= 3  # retried only after faults
            outcomes["recovered" if len(mine) > 1 else "clean"] += 1
        else:
            assert isinstance(result, BackendError) and result.kind is KIND[last], (last, result)
            assert len(mine) == 3 and all(h.fault for h in mine)  # 1 + max_retries attempts, all faulted
            outcomes["failed"] += 1
    # The draws hash the request's messages, so this mix is the same in every session: it holds every outcome
    # and every fault (it changes only if the sanity images do).
    assert set(outcomes) == {"clean", "recovered", "failed"}, outcomes
    assert set(proxy.injected()) == set(FAULTS), proxy.injected()
    again = seeded(mix, seed=1, key=_messages_key)
    assert [again(h.request) for h in proxy.hits] == [h.fault for h in proxy.hits]


# ---------------------------------------------------------------------------------------------------- end to end

# Sample index -> what the proxy does to it in the first run. Every attempt: the retries run out.
ALWAYS = {1: "429", 2: "drop"}  # one permanent http failure: its retries back off for seconds
ONCE = {3: "5xx", 4: "truncated", 5: "drop"}  # the first attempt only: a retry gets through
ANSWERED = {0, 3, 4}  # forwarded answers replaced by a valid critique; 5, 6 and 7 keep the model's own text


def _log(out: Path) -> tuple[dict, list[dict]]:
    (run_dir,) = [p for p in out.iterdir() if (p / "run.json").exists()]
    record = json.loads((run_dir / "run.json").read_text())
    lines = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    return record, lines


def _expected_kind(hits: list[Hit], answered: bool) -> str | None:
    """What the client must have recorded, from what the proxy did to a sample's last attempt."""
    last = hits[-1].fault
    if last is not None:
        return KIND[last].value
    return None if answered else "model text"


@pytest.mark.slow
def test_faulty_run_records_every_sample_and_resume_retries_exactly_the_failed(
    tmp_path: Path, cli_env: dict[str, str], tiny_vlm: Path, vlm_server: str, samples: list[Sample]
) -> None:
    index = {frozenset(m.sha256 for m in s.candidates): i for i, s in enumerate(samples)}
    assert len(index) == len(samples)  # the images tell every sample apart

    def plan(request: Request) -> str | None:
        i = index[_images(request)]
        return ALWAYS.get(i) or (ONCE.get(i) if request.attempt == 0 else None)

    answered = set(ANSWERED)
    with FaultProxy(vlm_server, plan, answer=lambda r: VALID if index[_images(r)] in answered else None) as proxy:
        args = ("run", "--task", "sanity", "--model", "rationalrewards-8b", "-M", f"path={tiny_vlm}",
                "-M", "max_tokens=8", "-T", f"n={len(samples)}", "--quiet", "--output", str(tmp_path / "runs"),
                "--base-url", proxy.url)
        first = rrbench(*args, env=cli_env, cwd=tmp_path, timeout=120)
        # A run whose samples failed is still a complete run (exit 0): failures are data, counted in run.json.
        assert first.returncode == 0, first.stderr
        record, lines = _log(tmp_path / "runs")
        assert record["status"] == "complete" and len(lines) == len(samples)
        by_sample = {index[k]: v for k, v in _by_conversation(proxy.hits).items()}
        assert set(by_sample) == set(range(len(samples)))
        position = {s.id: i for i, s in enumerate(samples)}
        recorded = {}
        for line in lines:
            i = position[line["id"]]
            failure = line.get("failure")
            if failure is None:
                assert line["trials"][0]["prediction"]["scores"] == [7.0, 5.0]  # VALID's scores: a real success
            recorded[i] = "model text" if failure in MODEL_TEXT_KINDS else failure
        expected = {i: _expected_kind(h, i in answered) for i, h in by_sample.items()}
        assert recorded == expected
        assert recorded == {0: None, 1: "rate_limited", 2: "http", 3: None, 4: None, 5: "model text",
                            6: "model text", 7: "model text"}
        attempts = len(by_sample[1])
        assert attempts > 1 and all(len(by_sample[i]) == attempts for i in ALWAYS)  # 1 + max_retries each
        assert all(len(by_sample[i]) == 2 for i in ONCE) and all(len(by_sample[i]) == 1 for i in (0, 6, 7))
        assert proxy.injected() == {"429": attempts, "drop": attempts + 1, "5xx": 1, "truncated": 1}
        kinds = Counter(line["failure"] for line in lines if line.get("failure"))
        assert record["counts"]["failed_by_kind"] == dict(kinds)
        assert kinds["rate_limited"] == 1 and kinds["http"] == 1

        # Faults off, and now the model "answers" all but sample 7: the resume asks for exactly the failed ones.
        failed = {i for i, kind in recorded.items() if kind is not None}
        proxy.plan = None
        answered = set(range(len(samples))) - {7}
        seen = len(proxy.hits)
        again = rrbench(*args, env=cli_env, cwd=tmp_path, timeout=120)
        assert again.returncode == 0, again.stderr
        resent = [index[_images(h.request)] for h in proxy.hits[seen:]]
        assert sorted(resent) == sorted(failed)  # each failed sample once, no succeeded one
        record, lines = _log(tmp_path / "runs")
        assert record["stats"]["new_samples"] == len(failed) and record["sessions"] == 2
        assert sorted(line["id"] for line in lines) == sorted(s.id for s in samples)  # one line per sample
        assert [line["id"] for line in lines if line.get("failure")] == [samples[7].id]
        assert record["counts"]["failed"] == 1 and record["counts"]["recorded"] == len(samples)

        # A third run has only sample 7 left to retry.
        seen = len(proxy.hits)
        third = rrbench(*args, env=cli_env, cwd=tmp_path, timeout=120)
        assert third.returncode == 0, third.stderr
        assert [index[_images(h.request)] for h in proxy.hits[seen:]] == [7]
        record, lines = _log(tmp_path / "runs")
        assert len(lines) == len(samples) and record["stats"]["new_samples"] == 1
