"""API keys never reach a file or a log.

With keys set in the environment (the one the run uses, plus the usual provider variables), a successful run, a
run whose every request fails, a run that fails at start, `doctor`, `rescore`, `report` and `leaderboard` leave no
key in any file under the test's folder (run directories, the response cache and its WAL, reports, tables) nor in
anything they print. The server is the tiny `transformers serve` behind the fault proxy (tests/fault_proxy.py),
which swaps the random model's text for a valid critique so the successful run has real verdicts, or answers 503.
Each secret is random per test, so no file can contain it by accident of the source.

A hostile server (tests/hostile_server.py) then echoes what it was sent: the ``Authorization`` header (also base64-
and URL-encoded, and inside a base64 of the whole header block) and the request body, in a successful answer that
is stored and cached, and in a 500's error body; ``--base-url`` carries credentials (``user:pass@`` and ``?key=``).
Nothing of any of it may reach a file or an output, in any of those encodings.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import sqlite3
import string
import urllib.parse
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rrbench import cli
from rrbench.redact import REDACTED, TEXT_CAP, Scrubber, clean, redact_url
from rrbench.types import FailureKind, Judgement
from tests.fault_proxy import FaultProxy
from tests.hostile_server import HostileServer
from tests.test_faults import VALID

KEY_VAR = "RRBENCH_TEST_API_KEY"


@pytest.mark.slow
def test_no_key_in_any_file_or_output(tmp_path: Path, tiny_vlm: Path, vlm_server: str,
                                      monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    keys = {name: f"sk-{secrets.token_hex(16)}" for name in (KEY_VAR, "OPENAI_API_KEY", "GEMINI_API_KEY", "HF_TOKEN")}
    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    outputs: list[str] = []

    # In this process (the commands are what a user types; a subprocess each would cost 3 s of imports).
    def run(*args: str, expect: int | None = 0) -> str:
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        outputs.append(out + err)
        assert expect is None or code == expect, err
        return out + err

    base = ("run", "--task", "sanity", "-T", "n=6", "-T", "size=32", "--model", "rationalrewards-8b",
            "-M", f"path={tiny_vlm}", "-M", "max_tokens=8", "--api-key-env", KEY_VAR, "--quiet")
    with FaultProxy(vlm_server, answer=lambda _: VALID) as proxy:
        run(*base, "--base-url", proxy.url, "--output", str(tmp_path / "ok"))
    with FaultProxy(vlm_server, lambda _: "5xx") as failing:
        run(*base, "-M", "max_retries=0", "--base-url", failing.url, "--output", str(tmp_path / "failing"),
            expect=None)
        assert failing.injected()["5xx"] >= 6  # the requests were made, and every one failed
    run(*base, "--base-url", "http://127.0.0.1:9/v1", "--output", str(tmp_path / "dead"), expect=2)
    with monkeypatch.context() as unset:
        unset.delenv(KEY_VAR)
        assert f"{KEY_VAR} is not set" in run(*base, "--base-url", vlm_server, "--output", str(tmp_path / "unset"),
                                              expect=2)  # the run really reads this key

    (ok_run,) = (tmp_path / "ok").iterdir()
    record = json.loads((ok_run / "run.json").read_text())
    assert record["counts"]["failed"] == 0 and record["status"] == "complete"  # real verdicts, key in use
    assert KEY_VAR in json.dumps(record["model"])  # the variable's name is recorded, never its value
    (failed_run,) = (tmp_path / "failing").iterdir()
    assert json.loads((failed_run / "run.json").read_text())["counts"]["failed_by_kind"].get("http", 0) >= 1
    assert "OPENAI_API_KEY" in run("doctor", "--model", "gpt-4o", "--base-url", vlm_server, expect=None)
    run("rescore", str(ok_run), "--tie-policy", "ties-excluded")
    run("report", str(ok_run))
    run("leaderboard", str(tmp_path / "ok"), str(tmp_path / "failing"), "--out", str(tmp_path / "lb"),
        "--plots", "none")

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "cache.sqlite" for p in files) and any(p.name == "report.html" for p in files)
    _assert_nowhere(keys.values(), files, outputs)


def _forms(secret: str) -> list[bytes]:
    """What a server or a log might turn a secret into."""
    raw = secret.encode()
    return [raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw), base64.b64encode(b"Bearer " + raw),
            urllib.parse.quote(secret, safe="").encode(), urllib.parse.quote_plus(secret).encode()]


def _assert_nowhere(values: Iterable[str], files: list[Path], outputs: list[str]) -> None:
    for value in values:
        forms = _forms(value)
        for path in files:
            data = path.read_bytes()
            assert not any(form in data for form in forms), f"a secret leaked into {path}"
        for text in outputs:
            assert not any(form.decode() in text for form in forms), f"a secret leaked into an output: {text[:300]}"


def _secret() -> str:
    # '/', '+' and '=' make the base64, URL-encoded and JSON forms differ from the literal
    return f"sk-{secrets.token_urlsafe(18)}/{secrets.token_hex(4)}+{secrets.token_hex(4)}="


def test_an_echoing_server_and_credentials_in_the_base_url_leak_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    keys = {name: _secret() for name in (KEY_VAR, "OPENAI_API_KEY", "GEMINI_API_KEY", "HF_TOKEN")}
    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    user, password, query_key = f"user-{secrets.token_hex(8)}", _secret(), _secret()
    outputs: list[str] = []

    def run(*args: str, expect: int | None) -> str:
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        outputs.append(out + err)
        assert expect is None or code == expect, err
        return out + err

    def with_credentials(url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        userinfo = f"{user}:{urllib.parse.quote(password, safe='')}"
        return parts._replace(netloc=f"{userinfo}@{parts.netloc}",
                              query=f"key={urllib.parse.quote(query_key, safe='')}").geturl()

    base = ("run", "--task", "sanity", "-T", "n=3", "-T", "size=32", "-M", "max_retries=0", "--quiet")
    with HostileServer("echo") as echo, HostileServer("echo-error") as failing, HostileServer("401") as refusing:
        # gpt-4o with its Bearer key: the echo is a successful verdict, stored in the log and the cache
        run(*base, "--model", "gpt-4o", "--base-url", echo.url, "--output", str(tmp_path / "echo"), expect=0)
        # a served judge with credentials in the URL: Basic auth and the ?key= query come back in the echo
        run(*base, "--model", "qwen3-vl-8b", "-M", "served_model=m", "--api-key-env", KEY_VAR,
            "--base-url", with_credentials(echo.url), "--output", str(tmp_path / "echo-url"), expect=0)
        # --no-cache: the echo run's cached verdicts would answer these (the URL is not part of a model's identity)
        run(*base, "--model", "gpt-4o", "--base-url", with_credentials(failing.url), "--no-cache",
            "--output", str(tmp_path / "failing"), expect=0)
        refused = run(*base, "--model", "gpt-4o", "--base-url", with_credentials(refusing.url), "--no-cache",
                      "--output", str(tmp_path / "refused"), expect=2)
        assert "refused the API key" in refused and "***@127.0.0.1" in refused  # the URL shown, its secrets not
        # doctor's exit code depends on this machine's extras; what matters is what it prints
        assert "***@127.0.0.1" in run("doctor", "--model", "gpt-4o", "--base-url", with_credentials(echo.url),
                                      expect=None)
        assert all(h.headers.get("Authorization") for h in echo.requests)  # the secrets really were sent
        assert any(query_key in urllib.parse.unquote(h.path) for h in echo.requests)
    dead = with_credentials("http://127.0.0.1:9/v1")
    assert "cannot reach http://***@127.0.0.1:9/v1?key=***" in run(*base, "--model", "gpt-4o", "--base-url", dead,
                                                                   "--output", str(tmp_path / "dead"), expect=2)
    runs = {name: next((tmp_path / name).iterdir()) for name in ("echo", "echo-url", "failing")}
    echo_run = runs["echo"]
    run("rescore", str(echo_run), "--tie-policy", "ties-excluded", expect=0)
    run("report", str(echo_run), expect=0)
    run("show", str(echo_run), expect=0)

    for name, run_dir in runs.items():
        record = json.loads((run_dir / "run.json").read_text())
        expected = {"echo": {}, "echo-url": {}, "failing": {"http": 3}}[name]
        assert record["counts"]["failed_by_kind"] == expected, name  # echoes were answers; the 500s failures
        log = (run_dir / "samples.jsonl").read_text()
        assert "[redacted]" in log, name  # what was echoed is there, with the secrets taken out
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        cached = [value for (value,) in db.execute("SELECT value FROM responses")]
    assert len(cached) == 6 and all("[redacted]" in value for value in cached)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    _assert_nowhere([*keys.values(), password, query_key, user, f"{user}:{password}"], files, outputs)


# ---------------------------------------------------------------------------------------------- the scrubber itself


def _decodings(text: str) -> Iterator[bytes]:
    """Every way a base64 run left in ``text`` could be decoded (each alignment, both alphabets)."""
    for run in re.split(r"[^A-Za-z0-9+/_-]+", text.replace(REDACTED, " ")):
        for start in range(4):
            chunk = run[start:]
            chunk = chunk[: len(chunk) // 4 * 4].replace("-", "+").replace("_", "/")
            try:
                yield base64.b64decode(chunk)
            except binascii.Error:
                continue


@settings(max_examples=300, deadline=None)
@given(secret=st.text(string.ascii_letters + string.digits + "-_/+=.~", min_size=8, max_size=48),
       before=st.binary(max_size=12), after=st.binary(max_size=12), urlsafe=st.booleans())
def test_a_secret_cannot_be_decoded_from_any_base64_around_it(secret: str, before: bytes, after: bytes,
                                                              urlsafe: bool) -> None:
    # A server may base64 a whole header block: the secret then sits at any offset of the encoded bytes.
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    scrubbed = Scrubber([secret])(encode(before + secret.encode() + after).decode())
    assert not any(secret.encode() in decoded for decoded in _decodings(scrubbed))


@given(secret=st.text(string.ascii_letters + string.digits + "-_/+=.~:@!$&'()*,;%", min_size=8, max_size=40))
def test_every_plain_form_of_a_secret_is_replaced(secret: str) -> None:
    quoted = urllib.parse.quote(secret, safe="")
    lower_escapes = re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quoted)  # as some servers write them
    forms = [secret, quoted, lower_escapes, urllib.parse.quote_plus(secret),
             json.dumps(secret)[1:-1], f"Bearer {secret}"]
    scrubbed = Scrubber([secret])(" | ".join(forms))
    assert not any(form in scrubbed for form in forms), scrubbed


def test_short_values_are_not_treated_as_secrets() -> None:
    # OPENAI_API_KEY=EMPTY is what a local vLLM server is often given: every "EMPTY" in a text is not a secret.
    assert Scrubber(["EMPTY"])("the answer was EMPTY") == "the answer was EMPTY"


@pytest.mark.parametrize(("url", "shown"), [
    ("http://user:pa%2Fss@gpu:8000/v1", "http://***@gpu:8000/v1"),
    ("https://TOKEN@api.example.com/v1?key=abc&alt=json#frag", "https://***@api.example.com/v1?key=***&alt=***"),
    ("http://[::1]:8000/v1?token", "http://[::1]:8000/v1?token=***"),
    ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
    ("http://u:p@[::1/v1?k=s", "http://***@[::1/v1"),  # not a valid URL: still nothing of the credentials
])
def test_a_url_is_shown_without_its_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_stored_judgement_is_scrubbed_before_it_is_capped() -> None:
    secret = f"sk-{secrets.token_hex(16)}"
    # the secret straddles the cap: cutting first would keep its first half
    raw = "x" * (TEXT_CAP - 10) + secret + "y" * 50
    judgement = Judgement.failed(FailureKind.HTTP, f"HTTP 500: Authorization: Bearer {secret}", raw=raw)
    stored = clean(judgement, Scrubber([secret]))
    assert stored.raw is not None and stored.failure_detail == f"HTTP 500: Authorization: Bearer {REDACTED}"
    assert secret[:10] not in stored.raw and len(stored.raw) < TEXT_CAP + 100
    assert stored.raw.endswith(f"[rrbench: cut to the first {TEXT_CAP:,} of {TEXT_CAP + 50:,} characters]")
    assert stored.flags == ("capped:raw",)
    untouched = Judgement.failed(FailureKind.PARSE, "no verdict found", raw="short")
    assert clean(untouched, Scrubber([secret])) is untouched
