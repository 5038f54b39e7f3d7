"""The OpenAI-compatible client on the wire (rrbench/backends/_exchange.py, openai_http.py), against a real server:

- a body sent in pieces (never joined) arrives byte for byte as built, with its Content-Length;
- the environment's HTTP proxy, NO_PROXY and ~/.netrc apply as httpx and aiohttp's trust_env applied them, though
  rrbench reads them once per endpoint instead of in two worker-thread hops per request;
- one connection pool however many requests arrive before it exists;
- a judge run encodes its images in the loader thread, and a resumed run encodes none of the samples it skips.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from rrbench import cli
from rrbench.backends import openai_http
from rrbench.backends._base import BackendError, Completion, Sampling, image_part, text_part, user_message
from rrbench.backends.openai_http import OpenAIHTTPBackend
from rrbench.tasks.sanity import sanity
from rrbench.types import Media, UserError
from tests.judge_server import ScriptedJudge
from tests.test_task_genai_bench import ROWS, T2I_IMAGES, t2i_columns, write_parquet

GREEDY = Sampling(temperature=0.0, max_tokens=8)
# a RationalRewards pairwise critique that parses (a failed sample would be asked again on resume)
VERDICT = ("# Detailed Judgement\n1. Text Faithfulness:\n## Justification: fine\n## Score A: 4\n## Score B: 3\n"
           "## Winner: Image A\n2. Physical and Visual Quality:\n## Score A: 3\n## Score B: 3\n## Winner: tie\n"
           "3. Text Rendering:\n## Score A: N/A\n## Score B: N/A\n## Winner: N/A\n# Summary: A.\n")
PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY",
                   "all_proxy")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No proxy from the machine, and a .netrc only where a test writes one."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


def chat(url: str, messages: list[Any] | None = None, **options: Any) -> Completion | BackendError:
    async def main() -> Completion | BackendError:
        backend = OpenAIHTTPBackend([url], "judge", max_retries=0, **options)
        try:
            return await backend.chat(messages or [user_message(text_part("which is better?"))], GREEDY)
        except BackendError as exc:
            return exc
        finally:
            await backend.close()

    return asyncio.run(main())


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_body_sent_in_pieces_arrives_byte_for_byte_as_built() -> None:
    a, b = next(iter(sanity(n=1).load(None))).candidates
    messages = [user_message(text_part("Which image is better? \"Quoted\", ünïcode, \\ and\nnewline"),
                             image_part(a), text_part("versus"), image_part(b), text_part("answer"))]
    backend = OpenAIHTTPBackend(["http://127.0.0.1:9/v1"], "judge")
    pieces = backend._body_pieces(messages, GREEDY)
    expected = backend._body(messages, GREEDY)
    assert len(pieces) == 5 and b"".join(pieces) == expected  # JSON, image, JSON, image, JSON
    with ScriptedJudge(lambda request: "fine") as server:
        answer = chat(server.url, messages)
    assert isinstance(answer, Completion) and answer.text == "fine"
    (request,) = server.requests
    assert int(request.headers["content-length"]) == len(request.raw)
    # byte for byte (each backend's own placeholder never reaches the wire), and the images' own bytes
    assert request.raw == expected and json.loads(request.raw)["model"] == "judge"
    assert [i.data for i in request.images] == [a.read_bytes(), b.read_bytes()]
    assert request.texts[0] == "Which image is better? \"Quoted\", ünïcode, \\ and\nnewline"
    assert b"rrbench-image-" not in request.raw


def test_the_environments_http_proxy_carries_the_request_with_its_credentials(monkeypatch: pytest.MonkeyPatch
                                                                               ) -> None:
    with ScriptedJudge(lambda request: "via proxy") as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://alice:s%3Acret@127.0.0.1:{proxy.port}")
        answer = chat("http://judge.invalid:8000/v1")  # resolvable by the proxy only
    assert isinstance(answer, Completion) and answer.text == "via proxy"
    (request,) = proxy.requests
    assert request.target == "http://judge.invalid:8000/v1/chat/completions"  # absolute form: a proxy's request
    assert request.headers["proxy-authorization"] == basic("alice", "s:cret")
    assert "authorization" not in request.headers  # the proxy's credentials are not the server's


def test_a_run_behind_a_proxy_checks_the_proxy_not_the_unreachable_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the first sample, rrbench checks that something listens where its requests go: through a proxy, the
    proxy (the server itself may be unreachable from here, as behind a corporate proxy)."""
    backend = OpenAIHTTPBackend(["http://judge.invalid:8000/v1"], "judge")
    with ScriptedJudge(lambda request: "via proxy") as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        asyncio.run(backend.check_reachable(timeout_s=5))  # no error: the proxy listens
        proxy.stop()
        with pytest.raises(UserError, match=rf"cannot reach http://judge.invalid:8000/v1 \(through the proxy "
                                            rf"127.0.0.1:{proxy.port} from the environment: .*\)"):
            asyncio.run(backend.check_reachable(timeout_s=5))


def test_no_proxy_sends_the_request_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    with ScriptedJudge(lambda request: "via proxy") as proxy, ScriptedJudge(lambda request: "direct") as server:
        monkeypatch.setenv("HTTP_PROXY", proxy.url.removesuffix("/v1"))
        monkeypatch.setenv("NO_PROXY", "judge.invalid,127.0.0.1")
        direct = chat(server.url)
        unreachable = chat("http://judge.invalid:8000/v1")
    assert isinstance(direct, Completion) and direct.text == "direct"
    assert isinstance(unreachable, BackendError) and "judge.invalid" in str(unreachable)
    assert proxy.requests == []


def test_an_unsupported_proxy_is_said_once_without_its_credentials(monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with ScriptedJudge(lambda request: "direct") as server:
        monkeypatch.setenv("HTTP_PROXY", "socks5://user:topsecret@proxy.invalid:1080")
        answers = [chat(server.url), chat(server.url)]
    assert [a.text for a in answers if isinstance(a, Completion)] == ["direct", "direct"]
    err = capsys.readouterr().err
    assert err.count("warning: the http proxy from the environment (socks5://proxy.invalid:1080) is not an http://") \
        == 1, err
    assert "topsecret" not in err and "user" not in err
    monkeypatch.setenv("HTTP_PROXY", "user:topsecret at proxy")  # not a URL at all
    with ScriptedJudge(lambda request: "direct") as server:
        answer = chat(server.url)
    assert isinstance(answer, Completion) and answer.text == "direct"
    err = capsys.readouterr().err
    assert "proxy from the environment (not a URL)" in err and "topsecret" not in err, err


def test_a_netrc_entry_is_basic_auth_only_without_an_api_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path
                                                             ) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login bob password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("RRBENCH_TEST_KEY", "sk-test-123")
    with ScriptedJudge(lambda request: "fine") as server:
        without_key = chat(server.url)
        with_key = chat(server.url, api_key_env="RRBENCH_TEST_KEY")  # aiohttp's trust_env refused this one
    assert isinstance(without_key, Completion) and isinstance(with_key, Completion)
    first, second = server.requests
    assert first.headers["authorization"] == basic("bob", "hunter2")
    assert second.headers["authorization"] == "Bearer sk-test-123"


def test_a_proxy_without_credentials_takes_them_from_netrc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login carol password pw\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with ScriptedJudge(lambda request: "via proxy") as proxy:
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
        assert isinstance(chat("http://judge.invalid/v1"), Completion)
    (request,) = proxy.requests
    assert request.headers["proxy-authorization"] == basic("carol", "pw")
    assert "authorization" not in request.headers  # no entry for judge.invalid


def test_requests_arriving_before_the_pool_exists_share_one(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[object] = []
    real = openai_http.new_session

    def counting(*args: Any, **kwargs: Any) -> object:
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(openai_http, "new_session", counting)
    with ScriptedJudge(lambda request: "fine") as server:
        async def main() -> list[Completion]:
            backend = OpenAIHTTPBackend([server.url], "judge", concurrency=8)
            try:
                messages = [user_message(text_part("which?"))]
                return list(await asyncio.gather(*(backend.chat(messages, GREEDY) for _ in range(8))))
            finally:
                await backend.close()

        answers = asyncio.run(main())
    assert [a.text for a in answers] == ["fine"] * 8
    assert len(made) == 1  # each start used to make its own pool, and all but the last were never closed


def test_a_judge_run_encodes_its_images_in_the_loader_thread_and_a_resume_only_those_it_asks(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    reads: list[str] = []
    real_read = Media.read_bytes

    def read(self: Media) -> bytes:
        reads.append(threading.current_thread().name)
        return real_read(self)

    data = tmp_path / "genai"
    write_parquet(data / "image_generation" / "test_v1-00000-of-00001.parquet", t2i_columns(ROWS[:6]), T2I_IMAGES)
    monkeypatch.setattr(Media, "read_bytes", read)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    broken = {"row 1", "row 4"}  # answered without a verdict the first time: failed, so asked again on resume
    with ScriptedJudge(lambda r: "no verdict" if broken and any(b in r.text for b in broken) else VERDICT) as server:
        def run() -> int:
            return cli.main(["run", "--task", "genai-bench-t2i", "--data", str(data), "--model", "rationalrewards-8b",
                             "--base-url", server.url, "--output", str(tmp_path / "runs"), "--no-cache", "--quiet"])

        assert run() == 0
        assert len(server.requests) == 6 and all(len(r.images) == 2 for r in server.requests)
        # every image read (to hash it and to encode it) happened ahead of the loop, none on it
        assert reads and set(reads) == {"rrbench-loader"}, reads
        everything = len(reads)
        reads.clear()
        broken.clear()
        assert run() == 0  # the resume asks the two failed samples again, and only them
        assert len(server.requests) == 8
    assert reads and set(reads) == {"rrbench-loader"}, reads
    assert len(reads) <= everything / 2, (len(reads), everything)  # the four samples done are not encoded again
