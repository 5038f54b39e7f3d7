"""Both engines on one tiny random-weight Qwen3-VL: in-process transformers and `transformers serve` over HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path

import pytest

from rrbench.backends._base import BackendError, Completion, Sampling, image_part, text_part, user_message
from rrbench.backends.openai_http import OpenAIHTTPBackend
from rrbench.backends.transformers_backend import TransformersBackend
from rrbench.types import FailureKind, Media, UserError
from tasks.sanity import sanity

GREEDY = Sampling(temperature=0.0, max_tokens=12)


def _conversations(n: int = 2) -> list[list[dict]]:
    samples = list(sanity(n=n).load(None))
    return [[user_message(text_part(s.prompt), image_part(s.candidates[0]), image_part(s.candidates[1]))]
            for s in samples]


def _in_process(path: Path) -> list[Completion]:
    async def main() -> list[Completion]:
        backend = TransformersBackend(str(path))
        out = await backend.chat_batch(_conversations(), GREEDY)
        await backend.close()
        return out

    return asyncio.run(main())


def _over_http(url: str, model: str = "tiny", **kwargs: object) -> list[Completion]:
    async def main() -> list[Completion]:
        backend = OpenAIHTTPBackend([url], model, **kwargs)  # type: ignore[arg-type]
        try:
            return list(await asyncio.gather(*(backend.chat(c, GREEDY) for c in _conversations())))
        finally:
            await backend.close()

    return asyncio.run(main())


@pytest.mark.slow
def test_in_process_generation_is_batched_and_deterministic(tiny_vlm: Path) -> None:
    first, again = _in_process(tiny_vlm), _in_process(tiny_vlm)
    assert [c.text for c in first] == [c.text for c in again]
    assert all(c.finish_reason == "length" and c.usage["completion_tokens"] == 12 for c in first)
    assert all(c.usage["prompt_tokens"] > 50 for c in first)  # the two images' tokens are in the prompt


@pytest.mark.slow
def test_http_client_against_transformers_serve_matches_in_process(tiny_vlm: Path, vlm_server: str) -> None:
    served = _over_http(vlm_server, str(tiny_vlm))
    local = _in_process(tiny_vlm)
    # greedy decoding of the same weights: the server and the in-process engine must write the same text
    assert [c.text for c in served] == [c.text for c in local]
    assert all(c.finish_reason == "length" and c.usage.get("prompt_tokens") for c in served)


def test_unreachable_server_is_an_http_failure_after_retries() -> None:
    with pytest.raises(BackendError) as info:
        _over_http("http://127.0.0.1:9/v1", max_retries=2, backoff_s=0.01)
    assert info.value.kind is FailureKind.HTTP and "127.0.0.1:9" in str(info.value)


def test_missing_api_key_is_a_user_error_naming_the_variable() -> None:
    os.environ.pop("RRBENCH_TEST_KEY_NOT_SET", None)
    with pytest.raises(UserError, match="RRBENCH_TEST_KEY_NOT_SET is not set"):
        _over_http("http://127.0.0.1:9/v1", api_key_env="RRBENCH_TEST_KEY_NOT_SET")


def test_images_travel_as_their_own_bytes_unless_too_large() -> None:
    sample = next(iter(sanity(n=1).load(None)))
    media = sample.candidates[0]
    backend = OpenAIHTTPBackend(["http://x/v1"], "m")

    uri = backend._data_uri(media)
    assert uri.startswith(b"data:image/") and base64.b64decode(uri.split(b",", 1)[1]) == media.read_bytes()
    small = OpenAIHTTPBackend(["http://x/v1"], "m", max_pixels=64 * 64)
    uri = small._data_uri(media)
    assert base64.b64decode(uri.split(b",", 1)[1]) != media.read_bytes() and small.downscaled == 1
    broken = Media.from_bytes(b"\x89PNG not really")
    with pytest.raises(BackendError) as info:
        small._data_uri(broken)
    assert info.value.kind is FailureKind.DATA


def test_a_request_body_is_byte_for_byte_what_json_encoding_gives() -> None:
    """The body is assembled around the images' base64 (no JSON pass over megabytes); it must be exactly the
    compact JSON httpx's ``json=`` writes, whatever the text holds (quotes, newlines, non-ASCII, a string that looks
    like the placeholder) and whatever MIME type a task declares."""
    sample = next(iter(sanity(n=1).load(None)))
    png, jpeg_as_png = sample.candidates[0], Media.from_bytes(sample.candidates[1].read_bytes(), format='x"y')
    backend = OpenAIHTTPBackend(["http://x/v1"], "m\u00e9")
    text = 'say "hi"\n\tcafé ☕ rrbench-image-00 \\ </script>'
    messages = [{"role": "system", "content": "be fair"},
                {"role": "user", "content": [{"type": "text", "text": text}, {"type": "image", "media": png},
                                             {"type": "image", "media": jpeg_as_png}]}]
    body = backend._body(messages, Sampling(temperature=None, max_tokens=7))
    expected = {"model": "m\u00e9", "messages": [
        {"role": "system", "content": "be fair"},
        {"role": "user", "content": [
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": {"url": "data:" + png.mime + ";base64,"
                                                + base64.b64encode(png.read_bytes()).decode()}},
            {"type": "image_url", "image_url": {"url": 'data:image/x"y;base64,'
                                                + base64.b64encode(jpeg_as_png.read_bytes()).decode()}}]}],
        "max_tokens": 7}
    assert body == json.dumps(expected, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def test_one_overload_burst_halves_the_limit_once() -> None:
    """Eight requests in flight all meet a 503: the limit halves once (8 -> 4), not once per request (-> 1).
    An overload met by a request sent after that cut cuts again."""
    from rrbench.backends.openai_http import AdaptiveLimit

    async def main() -> list[int]:
        limit = AdaptiveLimit(8)
        burst = limit.epoch  # all eight were sent before any cut
        seen = []
        for _ in range(8):
            await limit.feedback(overloaded=True, sent_in=burst)
            seen.append(limit.limit)
        await limit.feedback(overloaded=True, sent_in=limit.epoch)  # sent after the cut: a new burst
        seen.append(limit.limit)
        return seen

    assert asyncio.run(main()) == [4, 4, 4, 4, 4, 4, 4, 4, 2]


def test_a_dead_endpoint_rests_and_retries_go_to_the_live_one() -> None:
    """Two endpoints, one refusing connections: least-busy alone would send every retry back to the dead one (it
    fails at once, so it is never busy); resting it after a connection failure lets all requests succeed."""
    from tests.judge_server import ScriptedJudge

    with ScriptedJudge(lambda request: "fine") as live, ScriptedJudge(lambda request: "fine") as dead:
        dead.stop()  # its port now refuses connections

        async def main() -> list[Completion]:
            backend = OpenAIHTTPBackend([dead.url, live.url], "judge", max_retries=1, backoff_s=0.0, concurrency=4)
            try:
                return list(await asyncio.gather(*(backend.chat(c, GREEDY) for c in _conversations(8))))
            finally:
                await backend.close()

        answers = asyncio.run(main())
    assert [a.text for a in answers] == ["fine"] * 8
    assert len(live.requests) == 8


def test_the_data_uri_of_an_image_is_built_once_for_both_orders() -> None:
    """A pair judged in both orders sends each image's base64 twice but reads and encodes it once."""
    from tests.judge_server import ScriptedJudge

    sample = next(iter(sanity(n=1).load(None)))
    a, b = sample.candidates
    reads = {"n": 0}
    real = Media.read_bytes

    def counting(self: Media) -> bytes:
        reads["n"] += 1
        return real(self)

    with ScriptedJudge(lambda request: "fine") as server:
        async def main() -> None:
            backend = OpenAIHTTPBackend([server.url], "judge")
            try:
                for first, second in ((a, b), (b, a)):
                    await backend.chat([user_message(text_part("which?"), image_part(first), image_part(second))],
                                       GREEDY)
            finally:
                await backend.close()

        import unittest.mock

        with unittest.mock.patch.object(Media, "read_bytes", counting):
            asyncio.run(main())
    sent = [[image.data for image in request.images] for request in server.requests]
    assert sent[0] == sent[1][::-1] and sent[0][0] != sent[0][1]  # both orders sent whole, in their order
    assert reads["n"] == 2  # one read per image (then its MIME type comes from the format the sample names)
