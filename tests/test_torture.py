"""Crash torture: a run against a real server is killed at random points and resumed, and must end as if nothing
had happened.

The server is `transformers serve` of the tiny random-weight Qwen3-VL on 127.0.0.1, reached through the fault
proxy (tests/fault_proxy.py) with no faults: the proxy only swaps the server's real answer text for a valid
critique whose scores are a hash of the images shown, so every sample gets a real verdict that differs between
samples, and an interrupted run can be compared with an uninterrupted one of the same spec, metric for metric.

* SIGKILL at 20 seeded points (lines written to samples.jsonl), each followed by a resume;
* Ctrl-C (SIGINT) at seeded points: exit code 130, status ``interrupted``, then a resume; and Ctrl-C while every
  sample in flight waits on a hung server: it must stop at once, not at the client timeout;
* the server itself SIGKILLed mid-run and started again on the same port: the samples in flight end as transport
  failures, and a resume asks the server again for exactly those.

The rrbench runs are the real CLI in subprocesses, since only a separate process can be killed.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.conftest import PLUGINS, free_port, rrbench
from tests.fault_proxy import FaultProxy, Request

N = 48  # samples per run
KILLS = 20
INTERRUPTS = 10
SEED = 20240611
OUTAGE_AT = 16  # lines written when the server is killed
TRANSPORT = {"http", "timeout"}

CRITIQUE = (
    "# Detailed Judgement\n1. Text Faithfulness:\n## Score A: {fa}\n## Score B: {fb}\n## Winner: {fw}\n"
    "2. Physical and Visual Quality:\n## Score A: {qa}\n## Score B: {qb}\n## Winner: {qw}\n"
    "3. Text Rendering:\n## Score A: N/A\n## Score B: N/A\n## Winner: N/A\n# Summary: scores from a hash.\n"
)


# ---------------------------------------------------------------------------------------------------- the server


class Served:
    """`transformers serve` of a checkpoint on a fixed port, so a test can kill it and start it again there.

    One torch thread: on a 2-core machine the default two OpenMP threads contend with the client, the proxy and
    whatever else runs for the cores. Measured with a CI run beside it: a critique request's median latency was
    300 ms with two threads against 55 ms with one, and the soak's clean requests started to hit the client
    timeout.
    """

    def __init__(self, checkpoint: Path, log: Path) -> None:
        self.checkpoint, self.log_path, self.port = checkpoint, log, free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120) -> float:
        """Start the server and wait until it answers /health; the seconds that took."""
        exe = shutil.which("transformers") or str(Path(sys.executable).parent / "transformers")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        self._log = self.log_path.open("a")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [exe, "serve", str(self.checkpoint), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)
        while not self._healthy():
            if self.proc.poll() is not None or time.monotonic() - started > timeout:
                self.kill()
                raise RuntimeError(f"transformers serve did not start; see {self.log_path}")
            time.sleep(0.1)
        return time.monotonic() - started

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2):
                return True
        except OSError:
            return False

    def warm_up(self) -> None:
        """One request, so that no test pays for the first one's lazy set-up."""
        body = {"model": str(self.checkpoint), "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        request = urllib.request.Request(f"{self.url}/chat/completions", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60):
            pass

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()  # a crash, not a shutdown: requests in flight get no answer
            self.proc.wait(30)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


@contextlib.contextmanager
def serving(checkpoint: Path, folder: Path) -> Iterator[Served]:
    """A started and warmed-up server of the checkpoint, killed on exit (its log in ``folder``)."""
    server = Served(checkpoint, folder / "serve.log")
    try:
        server.start()
        server.warm_up()
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def served(tiny_vlm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tiny_vlm, tmp_path_factory.mktemp("served")) as server:
        yield server


# ---------------------------------------------------------------------------------------------------- answers


def images(request: Request) -> tuple[str, ...]:
    """The sha256 of each image of a chat request, in the order shown."""
    body = json.loads(request.body)
    urls = [part["image_url"]["url"] for m in body["messages"] if isinstance(m["content"], list)
            for part in m["content"] if part["type"] == "image_url"]
    return tuple(hashlib.sha256(base64.b64decode(u.split(",", 1)[1])).hexdigest() for u in urls)


def critique(request: Request) -> str:
    """A valid critique whose 1-4 scores (so its winner, or a tie) are a hash of the images in the order shown."""
    digest = hashlib.sha256("".join(images(request)).encode()).digest()
    fa, fb, qa, qb = (1 + d % 4 for d in digest[:4])
    return CRITIQUE.format(fa=fa, fb=fb, fw=_winner(fa, fb), qa=qa, qb=qb, qw=_winner(qa, qb))


def _winner(a: int, b: int) -> str:
    return "Image A" if a > b else "Image B" if b > a else "tie"


@pytest.fixture(scope="module")
def proxy(served: Served) -> Iterator[FaultProxy]:
    with FaultProxy(served.url, answer=critique) as running:
        yield running


# ---------------------------------------------------------------------------------------------------- runs


def run_args(checkpoint: Path, url: str, out: Path) -> list[str]:
    # No client retries: a request that meets the dead server must end as a recorded failure, not be retried
    # into the restarted one. The same spec (hence run directory name) for every run in this file.
    return ["run", "--task", "sanity", "--model", "rationalrewards-8b", "-M", f"path={checkpoint}",
            "-M", "max_tokens=1", "-M", "max_retries=0", "-M", "timeout_s=20", "-T", f"n={N}", "-T", "size=32",
            "--concurrency", "16", "--quiet", "--output", str(out), "--base-url", url]


def env_with(cache: Path) -> dict[str, str]:
    return {**os.environ, "RRBENCH_CACHE": str(cache), "RRBENCH_PLUGINS": PLUGINS, "PYTHONUNBUFFERED": "1"}


def complete_lines(path: Path) -> list[dict[str, Any]]:
    """The log's finished lines; a last line without its newline (killed mid-write) is not one."""
    if not path.exists():
        return []
    data = path.read_bytes()
    return [json.loads(raw) for raw in data.split(b"\n")[:-1]]


def record(run_dir: Path) -> dict[str, Any]:
    return dict(json.loads((run_dir / "run.json").read_text()))


def numbers(rec: dict[str, Any]) -> tuple[Any, Any]:
    """What must not depend on interruptions: coverage and every metric (values, CIs, counts, per category)."""
    return rec["counts"], rec["metrics"]


@pytest.fixture(scope="module")
def reference(tiny_vlm: Path, proxy: FaultProxy, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run of the spec every test here interrupts."""
    base = tmp_path_factory.mktemp("reference")
    done = rrbench(*run_args(tiny_vlm, proxy.url, base / "runs"), env=env_with(base / "cache.sqlite"), cwd=base)
    assert done.returncode == 0, done.stderr
    (run_dir,) = (base / "runs").iterdir()
    rec = record(run_dir)
    assert rec["status"] == "complete" and rec["counts"]["failed"] == 0 and rec["counts"]["recorded"] == N
    values = {m["value"] for metrics in rec["metrics"]["by_category"].values() for m in metrics}
    assert len(values) > 2  # the hashed critiques give categories different accuracies: a real comparison
    return run_dir


def spawn(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "rrbench.cli", *args], env=env, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for_lines(proc: subprocess.Popen[bytes], log: Path, target: int, timeout: float = 60) -> None:
    """Until the log holds ``target`` finished lines or the process ends by itself."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if log.exists() and log.read_bytes().count(b"\n") >= target:
            return
        time.sleep(0.005)
    assert proc.poll() is not None, f"no {target} lines in {log} after {timeout} s"


def check_log(log: Path, kept_before: set[str]) -> set[str]:
    """The invariants that hold at any moment: no sample twice, nothing that had finished lost."""
    lines = complete_lines(log)
    ids = [line["id"] for line in lines]
    assert len(ids) == len(set(ids)), "a sample recorded twice"
    assert kept_before <= set(ids), "a finished sample was lost"
    assert not any(line.get("failure") for line in lines)  # no faults here: every answer is valid
    return set(ids)


def interrupt_at_points(points: list[int], sig: int, args: list[str], env: dict[str, str], cwd: Path,
                        log: Path) -> list[tuple[int, int, int]]:
    """One session per point, each sent ``sig`` once the log holds max(point, lines at start + 1) lines, so every
    session adds at least one sample; (lines at start, lines at the signal, exit code) for each session."""
    sessions, kept = [], check_log(log, set())
    for at in points:
        target = max(at, len(kept) + 1)
        proc = spawn(args, env, cwd)
        wait_for_lines(proc, log, target)
        if proc.poll() is None:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert b"Traceback" not in err, err.decode()
        sessions.append((len(kept), log.read_bytes().count(b"\n"), proc.returncode))
        kept = check_log(log, kept)
    return sessions


# ---------------------------------------------------------------------------------------------------- tests


@pytest.mark.slow
def test_sigkill_at_20_random_points_then_resume_equals_the_uninterrupted_run(
    tmp_path: Path, tiny_vlm: Path, proxy: FaultProxy, reference: Path
) -> None:
    out = tmp_path / "runs"
    args, env = run_args(tiny_vlm, proxy.url, out), env_with(tmp_path / "cache.sqlite")
    log = out / reference.name / "samples.jsonl"  # same spec, same directory name
    points = sorted(random.Random(SEED).sample(range(1, N - 8), KILLS))
    sessions = interrupt_at_points(points, signal.SIGKILL, args, env, tmp_path, log)
    # Every point was a kill in the middle of a run: the run never got to finish on its own.
    assert [code for *_, code in sessions] == [-signal.SIGKILL] * KILLS, sessions
    assert all(start < at < N for start, at, _ in sessions), sessions
    print(f"SIGKILL at lines {[at for _, at, _ in sessions]} of {N}")
    kept = len(complete_lines(log))

    final = rrbench(*args, env=env, cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    lines = complete_lines(log)
    assert sorted(line["id"] for line in lines) == sorted(line["id"] for line in complete_lines(reference /
                                                                                                  "samples.jsonl"))
    assert log.read_bytes().endswith(b"\n")
    rec = record(log.parent)
    assert rec["status"] == "complete" and rec["stats"]["new_samples"] == N - kept
    assert numbers(rec) == numbers(record(reference))


@pytest.mark.slow
def test_ctrl_c_at_random_points_exits_130_keeps_everything_and_resume_equals_the_uninterrupted_run(
    tmp_path: Path, tiny_vlm: Path, proxy: FaultProxy, reference: Path
) -> None:
    out = tmp_path / "runs"
    args, env = run_args(tiny_vlm, proxy.url, out), env_with(tmp_path / "cache.sqlite")
    log = out / reference.name / "samples.jsonl"
    points = sorted(random.Random(SEED + 1).sample(range(1, N - 8), INTERRUPTS))
    sessions = interrupt_at_points(points, signal.SIGINT, args, env, tmp_path, log)
    assert [code for *_, code in sessions] == [130] * INTERRUPTS, sessions  # rrbench's "interrupted" exit code
    rec = record(log.parent)
    assert rec["status"] == "interrupted"
    kept = len(complete_lines(log))
    # A clean stop also counts what it kept, so an interrupted run.json is truthful on its own.
    assert rec["counts"]["recorded"] == kept and rec["counts"]["missing"] == N - kept

    final = rrbench(*args, env=env, cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    ids = [line["id"] for line in complete_lines(log)]
    assert len(ids) == len(set(ids)) == N
    rec = record(log.parent)
    assert rec["status"] == "complete" and rec["stats"]["new_samples"] == N - kept
    assert numbers(rec) == numbers(record(reference))


@pytest.mark.slow
def test_ctrl_c_while_every_sample_waits_on_a_hung_server_stops_at_once(
    tmp_path: Path, tiny_vlm: Path, proxy: FaultProxy
) -> None:
    # The proxy holds every request unanswered, as a hung server does: the samples in flight would end only at
    # the client timeout (20 s here, 600 s by default). Ctrl-C used to wait for that twice over: the feeder for a
    # free slot (runner.py) and the close for the calls in flight (dispatch.py).
    out = tmp_path / "runs"
    seen = len(proxy.hits)
    proxy.plan = lambda request: "timeout"
    try:
        proc = spawn(run_args(tiny_vlm, proxy.url, out), env_with(tmp_path / "cache.sqlite"), tmp_path)
        deadline = time.monotonic() + 30
        while len(proxy.hits) - seen < 16 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # --concurrency 16: the feeder now waits for a slot
        assert len(proxy.hits) - seen == 16, proxy.hits[seen:]
        time.sleep(0.3)
        asked = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        stopped_in = time.monotonic() - asked
    finally:
        proxy.plan = None
    assert proc.returncode == 130, err.decode()
    assert stopped_in < 5, f"Ctrl-C took {stopped_in:.1f} s"
    (run_dir,) = out.iterdir()
    rec = record(run_dir)
    assert rec["status"] == "interrupted" and rec["counts"]["recorded"] == 0 == len(complete_lines(
        run_dir / "samples.jsonl"))


@pytest.mark.slow
def test_server_killed_mid_run_in_flight_samples_fail_as_transport_and_resume_retries_exactly_them(
    tmp_path: Path, tiny_vlm: Path, served: Served, proxy: FaultProxy, reference: Path
) -> None:
    out = tmp_path / "runs"
    args, env = run_args(tiny_vlm, proxy.url, out), env_with(tmp_path / "cache.sqlite")
    log = out / reference.name / "samples.jsonl"
    seen = len(proxy.hits)
    proc = spawn(args, env, tmp_path)
    wait_for_lines(proc, log, OUTAGE_AT)
    killed_at = time.monotonic()
    served.kill()
    _, err = proc.communicate(timeout=60)
    # A dead server is data, not a crash: the run finishes, every sample recorded once, failures counted.
    assert proc.returncode == 0, err.decode()
    lines = complete_lines(log)
    assert len(lines) == N and len({line["id"] for line in lines}) == N
    failed = {line["id"] for line in lines if line.get("failure")}
    assert failed and {line["failure"] for line in lines if line.get("failure")} <= TRANSPORT
    rec = record(log.parent)
    assert rec["status"] == "complete" and rec["counts"]["failed"] == len(failed)

    # Which samples the outage caught, from what the proxy saw: those whose request arrived after the kill, and
    # those in flight at it (arrived before, answered never). Every sample answered before the kill succeeded.
    by_sample = _sample_of()
    arrivals = {by_sample[images(h.request)]: h.at for h in proxy.hits[seen:]}
    assert set(arrivals) == {line["id"] for line in lines}  # one request per sample: no retries
    assert {sid for sid, at in arrivals.items() if at > killed_at} <= failed
    in_flight = {sid for sid in failed if arrivals[sid] <= killed_at}
    assert len(in_flight) <= 16  # at most --concurrency samples can have been in flight
    assert all("upstream" in str(e) for e in proxy.errors)  # the proxy saw the server go away, nothing else
    proxy.errors.clear()

    restart_s = served.start()
    print(f"server restarted in {restart_s:.1f} s; {len(in_flight)} samples in flight at the kill, "
          f"{len(failed)} failed in all")
    seen = len(proxy.hits)
    again = rrbench(*args, env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    resent = [by_sample[images(h.request)] for h in proxy.hits[seen:]]
    assert sorted(resent) == sorted(failed)  # each failed sample once, no succeeded one
    ids = [line["id"] for line in complete_lines(log)]
    assert len(ids) == len(set(ids)) == N
    rec = record(log.parent)
    assert rec["status"] == "complete" and rec["sessions"] == 2 and rec["stats"]["new_samples"] == len(failed)
    assert numbers(rec) == numbers(record(reference))


def _sample_of() -> dict[tuple[str, ...], str]:
    """Sample id by the images its request shows (one order per sample in this spec)."""
    from tasks.sanity import sanity

    out = {tuple(m.sha256 for m in s.candidates): s.id for s in sanity(n=N, size=32).load(None)}
    assert len(out) == N
    return out


# ---------------------------------------------------------------------------------------------------- kills of the
# commands that write outputs: `rescore` and `leaderboard` build their output beside its place and put it there in
# one step, so a SIGKILL at any moment leaves the previous output or the complete new one, never a mix. No server
# is needed: the runs are offline sanity runs.

OUTPUT_KILLS = 12


def offline_env(folder: Path) -> dict[str, str]:
    return {**os.environ, "RRBENCH_CACHE": str(folder / "cache.sqlite"), "RRBENCH_PLUGINS": PLUGINS,
            "PYTHONUNBUFFERED": "1"}


def offline_run(out: Path, env: dict[str, str], model: str, n: int) -> Path:
    done = rrbench("run", "--task", "sanity", "-T", f"n={n}", "-T", "size=32", "--model", model, "--order", "both",
                   "--quiet", "--no-cache", "--output", str(out), env=env, cwd=out.parent)
    assert done.returncode == 0, done.stderr
    return next(p for p in out.iterdir() if p.name.startswith(f"sanity__{model}__"))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (hidden staging folders beside it are not part of it)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def kill_points(seed: int, took: float) -> list[tuple[bool, float]]:
    """Seeded kill points: half at a delay from the start over the time one whole command took (and a little past),
    half at a delay of up to 50 ms after the command's staging folder appears, where its writing happens."""
    rnd = random.Random(seed)
    return [(False, rnd.uniform(0.0, took * 1.1)) for _ in range(OUTPUT_KILLS // 2)] + [
        (True, rnd.uniform(0.0, 0.05)) for _ in range(OUTPUT_KILLS - OUTPUT_KILLS // 2)]


def timed(args: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.monotonic()
    done = rrbench(*args, env=env, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return time.monotonic() - started


def _shown(points: list[tuple[bool, float]]) -> str:
    return ", ".join(f"{'staging+' if staged else ''}{delay:.3f} s" for staged, delay in points)


def kill_after(args: list[str], env: dict[str, str], cwd: Path, point: tuple[bool, float], staging: Path) -> int:
    """SIGKILL the command at ``point`` (see kill_points; ``staging``: the folder its staging folder appears in);
    its exit code (negative: killed)."""
    proc = subprocess.Popen([sys.executable, "-m", "rrbench.cli", *args], env=env, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after_staging, delay = point
    while after_staging and proc.poll() is None and not any(".staging-" in p.name for p in staging.glob(".*")):
        time.sleep(0.001)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.kill()
    return proc.wait(timeout=60)


def rescored(folder: Path) -> dict[str, Any] | None:
    """A rescore output's numbers, checked whole: its log complete and sealed by its run.json."""
    from rrbench.runner import integrity

    if not folder.exists():
        return None
    rec = record(folder)
    assert rec["integrity"] == integrity(rec, folder / "samples.jsonl"), "run.json and samples.jsonl disagree"
    return {"counts": rec["counts"], "metrics": rec["metrics"], "log": (folder / "samples.jsonl").read_bytes()}


@pytest.mark.slow
def test_sigkill_during_rescore_leaves_the_previous_output_or_the_complete_new_one(tmp_path: Path) -> None:
    env = offline_env(tmp_path)
    run_dir = offline_run(tmp_path / "runs", env, "random", 1500)
    args = ["rescore", str(run_dir), "--tie-policy", "ties-excluded", "--output"]
    took = timed([*args, str(tmp_path / "reference")], env, tmp_path)
    (reference,) = (tmp_path / "reference").iterdir()
    want = rescored(reference)
    out = tmp_path / "out"
    target = out / reference.name
    codes = []
    for point in kill_points(SEED + 2, took):
        codes.append(kill_after([*args, str(out)], env, tmp_path, point, out))
        assert rescored(target) in (None, want)  # nothing yet, or the whole output: never part of one
        assert [p.name for p in out.glob("*") if not p.name.startswith(".")] in ([], [target.name])
    print(f"rescore ({took:.2f} s) killed at {_shown(kill_points(SEED + 2, took))}: exit {codes}")
    assert -signal.SIGKILL in codes
    assert rrbench(*args, str(out), env=env, cwd=tmp_path).returncode == 0
    assert rescored(target) == want
    assert [p.name for p in out.iterdir()] == [target.name]  # the killed builds' staging folders are cleared


@pytest.mark.slow
def test_sigkill_during_leaderboard_leaves_the_previous_board_or_the_complete_new_one(tmp_path: Path) -> None:
    env = offline_env(tmp_path)
    runs = tmp_path / "runs"
    for model in ("random", "always-first"):
        offline_run(runs, env, model, 400)
    extra = offline_run(tmp_path / "later", env, "sleepy", 400)
    board = tmp_path / "board"
    args = ["leaderboard", str(runs), "--out", str(board), "--no-plots", "--reported", "none"]
    assert rrbench(*args, env=env, cwd=tmp_path).returncode == 0
    (board / "mine.txt").write_text("not the leaderboard's: kept through every build")
    before = snapshot(board)
    saved = tmp_path / "saved"
    shutil.copytree(board, saved)
    shutil.copytree(extra, runs / extra.name)  # a new run: the next build differs from the last one
    took = timed([*args[:3], str(tmp_path / "reference"), *args[4:]], env, tmp_path)
    after = {**snapshot(tmp_path / "reference"), "mine.txt": before["mine.txt"]}
    assert after != before
    codes = []
    for point in kill_points(SEED + 3, took):
        shutil.rmtree(board)
        shutil.copytree(saved, board)
        codes.append(kill_after(args, env, tmp_path, point, tmp_path))
        state = snapshot(board)
        assert state in (before, after), sorted(set(state.items()) ^ set(after.items()))[:4]
    print(f"leaderboard ({took:.2f} s) killed at {_shown(kill_points(SEED + 3, took))}: exit {codes}")
    assert -signal.SIGKILL in codes
    assert rrbench(*args, env=env, cwd=tmp_path).returncode == 0
    assert snapshot(board) == after
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]
