"""The first hour of a new user, typed at the console: `doctor` names exactly what is missing, `run` says all of
it at once before anything starts, an offline hub fails in seconds, `ls KIND NAME` and `runs` describe what is
there, `--subset` gives unbiased quick estimates, and failed start-ups leave nothing behind."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import rrbench
from tests.test_task_genai_bench import ROWS, T2I_IMAGES, t2i_columns, write_parquet

PLUGIN = '''
from rrbench.doctor import FileNeed
from rrbench.models._base import RewardModel
from rrbench.registry import reward_model
from rrbench.types import Judgement


class Packed(RewardModel):
    name = "packed"

    def __init__(self, path):
        super().__init__(path=path)
        self.path = path

    def needs(self):
        return [FileNeed("weights", self.path, "path", (("packed.bin",),), "make packed.bin")]

    async def astart(self, generation="t2i"):
        self.needs()[0].resolve()
        raise ValueError("packed.bin is corrupt")  # a start-up that fails after every check passed

    def score(self, queries):
        return [Judgement(scores=(0.0,)) for _ in queries]


@reward_model("packed", description="test model: one file, checked by doctor", extra="no_such_extra_module")
def packed(path: str = "packed-weights"):
    return Packed(path)


@reward_model("packed-core", description="test model: one file, no extra")
def packed_core(path: str = "packed-weights"):
    return Packed(path)
'''


@pytest.fixture
def env(cli_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """A machine with an empty Hugging Face cache, offline: nothing a test checks can come from the network."""
    plugin = tmp_path / "packed_plugin.py"
    plugin.write_text(PLUGIN)
    return {**cli_env, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1",
            "RRBENCH_PLUGINS": f"{cli_env['RRBENCH_PLUGINS']},{plugin}"}


def _check(stdout: str, name: str) -> str:
    """The one check line named ``name`` ("<status>  <name>  <detail>  -> <fix>")."""
    lines = [ln.strip() for ln in stdout.splitlines() if re.match(rf"\s+(ok|warn|FAIL)\s+{re.escape(name)}\s", ln)]
    assert len(lines) == 1, (name, stdout)
    return lines[0]


def _genai_copy(folder: Path, rows: list[tuple[str, str, str]], ids: list[str] | None = None) -> Path:
    columns = t2i_columns(rows)
    if ids is not None:
        columns["pair_id"] = ids
    write_parquet(folder / "image_generation" / "test_v1-00000-of-00001.parquet", columns, T2I_IMAGES)
    return folder


def _record(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "run.json").read_text())


def _runs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if (p / "run.json").is_file()) if out.exists() else []


# ------------------------------------------------------------------------------------------------ doctor
# (doctor's checks of each model's files and of task data: tests/test_doctor.py)


def test_doctor_fails_a_missing_extra_of_the_model(tmp_path: Path, env: dict[str, str]) -> None:
    done = rrbench("doctor", "--model", "packed", env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert _check(done.stdout, "extra [no_such_extra_module]").startswith("FAIL")
    assert "pip install 'rrbench[no_such_extra_module]'" in done.stdout


# ------------------------------------------------------------------------------------------------ run's start


def test_run_says_everything_missing_at_once_before_anything_starts(tmp_path: Path, env: dict[str, str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "runs"
    done = rrbench("run", "--task", "genai-bench-t2i", "--model", "hpsv2", "-M", f"path={empty}", "--output",
                   str(out), env=env, cwd=tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()  # one line, no progress line before it
    assert line.startswith("rrbench: error: 3 things stop genai-bench-t2i x hpsv2: (1) data: ")
    data, checkpoint, tokenizer = (line.index(f"({i}) ") for i in (1, 2, 3))
    assert data < checkpoint < tokenizer  # data, then the model's files in the order it loads them
    assert "has no HPS_v2_compressed.pt" in line[checkpoint:tokenizer]
    assert "-M tokenizer=DIR" in line[tokenizer:]
    assert not out.exists() and done.stdout == ""
    first = rrbench("run", "--task", "genai-bench-t2i", "--model", "packed", "--output", str(out), env=env,
                    cwd=tmp_path)  # a missing extra comes before everything else
    assert first.returncode == 2 and "(1) extra [no_such_extra_module]" in first.stderr
    assert first.stderr.index("(1) extra") < first.stderr.index("(2) data") < first.stderr.index("(3) weights")


def test_failed_start_ups_leave_no_run_directory(tmp_path: Path, env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    weights = tmp_path / "packed-weights"
    weights.mkdir()
    (weights / "packed.bin").write_bytes(b"\0")
    late = rrbench("run", "--task", "sanity", "--model", "packed-core", "-M", f"path={weights}", "-T", "n=2",
                   "--output", str(out), env=env, cwd=tmp_path)  # every check passes; the model fails to start
    assert late.returncode != 0 and "packed.bin is corrupt" in late.stderr
    assert not out.exists(), list(out.iterdir())
    bad_arg = rrbench("run", "--task", "sanity", "--model", "random", "-M", "colour=red", "--output", str(out),
                      env=env, cwd=tmp_path)
    assert bad_arg.returncode == 2 and not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("a folder of the user's")
    again = rrbench("run", "--task", "sanity", "--model", "packed-core", "-M", f"path={weights}", "-T", "n=2",
                    "--output", str(out), env=env, cwd=tmp_path)
    assert again.returncode != 0 and sorted(p.name for p in out.iterdir()) == ["keep.txt"]


# ------------------------------------------------------------------------------------------------ offline hub


@pytest.fixture
def silent_hub() -> Iterator[str]:
    """A hub endpoint that accepts connections and never answers (a captive network, a dead proxy)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens once the socket is closed


@pytest.mark.parametrize("hub", ["closed", "silent", "offline"])
def test_an_unreachable_hub_fails_in_seconds_with_one_line(hub: str, tmp_path: Path, env: dict[str, str],
                                                           silent_hub: str) -> None:
    env = {k: v for k, v in env.items() if k != "HF_HUB_OFFLINE"}
    if hub == "offline":
        env["HF_HUB_OFFLINE"] = "1"
    else:
        env["HF_ENDPOINT"] = _closed_port() if hub == "closed" else silent_hub
    start = time.monotonic()
    done = rrbench("run", "--task", "genai-bench-t2i", "--model", "random", "--output", str(tmp_path / "runs"),
                   env=env, cwd=tmp_path, timeout=20)  # huggingface_hub's own retries took minutes
    elapsed = time.monotonic() - start
    (line,) = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "TIGER-Lab/GenAI-Bench is not in the local cache and" in line
    assert ("HF_HUB_OFFLINE is set" if hub == "offline" else "the hub is unreachable") in line
    assert "hf download TIGER-Lab/GenAI-Bench" in line and "Retrying" not in done.stderr
    print(f"{hub} hub: failed after {elapsed:.1f} s")


# ------------------------------------------------------------------------------------------------ ls, runs


def test_ls_describes_one_task_in_full(tmp_path: Path, env: dict[str, str]) -> None:
    done = rrbench("ls", "tasks", "genai-bench-t2i", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "task genai-bench-t2i: GenAI-Bench v1 text-to-image" in text
    assert "size 1,735 samples" in text and "data: TIGER-Lab/GenAI-Bench (image_generation, test_v1)" in text
    assert "revision: not pinned" in text
    assert re.search(r"genai-bench-4way \(default\): order fixed, mode auto, ties genai-4way \(GenAI-Bench official",
                     text)
    assert "failures wrong, metrics accuracy" in text and "rationalrewards-paper: " in text and "na=2.5" in text
    k = rrbench("ls", "tasks", "editreward-bench", env=env, cwd=tmp_path).stdout
    assert re.search(r"-T k\s+= 2", k) and "revision: 837769c" in k
    sanity = rrbench("ls", "tasks", "sanity", env=env, cwd=tmp_path).stdout
    for key, default in (("size", "256"), ("variant", "'t2i'"), ("n", "None"), ("seed", "0")):
        assert re.search(rf"-T {key}\s+= {re.escape(default)}", sanity), sanity


def test_ls_describes_one_model_in_full(tmp_path: Path, env: dict[str, str]) -> None:
    text = rrbench("ls", "models", "pickscore", env=env, cwd=tmp_path).stdout
    assert "extra: pip install 'rrbench[transformers]'" in text
    assert re.search(r"-M path\s+= 'yuvalkirstain/PickScore_v1'", text) and re.search(r"-M batch_size\s+= 16", text)
    assert "weights (-M path=): yuvalkirstain/PickScore_v1: config.json, model.safetensors or pytorch_model.bin" in text
    judge = rrbench("ls", "models", "qwen3-vl-8b", env=env, cwd=tmp_path).stdout
    assert re.search(r"-M max_model_len\s+= 40960", judge) and "--base-url URL" in judge
    unknown = rrbench("ls", "models", "pickscor", env=env, cwd=tmp_path)
    assert unknown.returncode == 2 and "did you mean pickscore" in unknown.stderr


def test_runs_lists_status_n_headline_and_partial(tmp_path: Path, env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    for extra in ((), ("--limit", "10")):
        done = rrbench("run", "--task", "sanity", "--model", "always-first", "-T", "n=20", *extra, "--quiet",
                       "--output", str(out), env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    listing = rrbench("runs", str(out), env=env, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[-1]: line for line in listing.stdout.splitlines() if str(out) in line}
    assert len(rows) == 2 and "2 run(s)" in listing.stdout
    for run_dir in _runs(out):
        record = _record(run_dir)
        row = rows[str(run_dir)]
        (accuracy,) = [m for m in record["metrics"]["overall"] if m["failure_policy"] == "excluded"]
        counts = record["counts"]
        assert f"{counts['recorded']}/{counts['expected']}" in row and "complete" in row
        assert f"accuracy {100 * accuracy['value']:.2f} [{100 * accuracy['ci_low']:.2f}" in row
        assert ("PARTIAL 10 of 20" in row) == (record["spec"]["limit"] == 10)
    here = rrbench("runs", env=env, cwd=tmp_path)  # runs/ of the current folder by default
    assert here.returncode == 0 and "2 run(s)" in here.stdout
    (tmp_path / "elsewhere").mkdir()
    nothing = rrbench("runs", env=env, cwd=tmp_path / "elsewhere")
    assert nothing.returncode == 2 and "no runs/ folder here" in nothing.stderr


# ------------------------------------------------------------------------------------------------ --subset


def _subset_run(tmp_path: Path, env: dict[str, str], data: Path, *args: str) -> dict[str, Any]:
    """A new run of the random model on a local GenAI-Bench copy: its run.json."""
    out = tmp_path / "runs"
    before = set(_runs(out))
    done = rrbench("run", "--task", "genai-bench-t2i", "--model", "random", "--data", str(data), "--quiet",
                   "--output", str(out), *args, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (run_dir,) = set(_runs(out)) - before
    return _record(run_dir)


def test_random_subset_is_seeded_recorded_and_independent_of_data_order(tmp_path: Path, env: dict[str, str]) -> None:
    rows = [ROWS[i % 7] for i in range(40)]
    ids = [f"p{i:03d}" for i in range(40)]
    forward = _genai_copy(tmp_path / "forward", rows, ids)
    backward = _genai_copy(tmp_path / "backward", rows[::-1], ids[::-1])
    first = _subset_run(tmp_path, env, forward, "--limit", "8", "--subset", "random", "--seed", "1")
    chosen = first["spec"]["subset"]
    assert chosen["method"] == "random" and chosen["seed"] == 1 and len(chosen["ids"]) == 8
    assert chosen["ids"] != ids[:8] and first["counts"]["recorded"] == 8
    reversed_copy = _subset_run(tmp_path, env, backward, "--limit", "8", "--subset", "random", "--seed", "1")
    assert reversed_copy["spec"]["subset"]["ids"] == chosen["ids"]  # the data's order does not move the choice
    other_seed = _subset_run(tmp_path, env, forward, "--limit", "8", "--subset", "random", "--seed", "2")
    assert other_seed["spec"]["subset"]["ids"] != chosen["ids"] and other_seed["spec_hash"] != first["spec_hash"]
    plain = _subset_run(tmp_path, env, forward, "--limit", "8")  # --limit alone: still the first N
    assert "subset" not in plain["spec"] and plain["spec_hash"] != first["spec_hash"]


def test_a_subset_run_resumes_the_same_samples(tmp_path: Path, env: dict[str, str]) -> None:
    data = _genai_copy(tmp_path / "genai", [ROWS[i % 7] for i in range(30)], [f"q{i:02d}" for i in range(30)])
    out = tmp_path / "runs"
    args = ["run", "--task", "genai-bench-t2i", "--model", "random", "--data", str(data), "--limit", "6",
            "--subset", "stratified", "--output", str(out)]
    first = rrbench(*args, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "subset: stratified 6 of 30 samples (seed 0" in first.stderr
    again = rrbench(*args, env=env, cwd=tmp_path)
    assert again.returncode == 0 and "this session: 0 new samples, 0 model calls" in again.stdout
    (run_dir,) = _runs(out)
    logged = [json.loads(x)["id"] for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert sorted(logged) == _record(run_dir)["spec"]["subset"]["ids"]


def test_stratified_subset_keeps_each_label_class_share(tmp_path: Path, env: dict[str, str]) -> None:
    votes = ["leftvote"] * 24 + ["rightvote"] * 12 + ["tievote"] * 4  # 60% / 30% / 10%
    rows = [("L", "D", v) for v in votes]
    data = _genai_copy(tmp_path / "genai", rows, [f"s{i:02d}" for i in range(40)])
    record = _subset_run(tmp_path, env, data, "--limit", "10", "--subset", "stratified", "--seed", "5")
    chosen = set(record["spec"]["subset"]["ids"])
    shares = Counter(v for i, v in enumerate(votes) if f"s{i:02d}" in chosen)
    assert shares == {"leftvote": 6, "rightvote": 3, "tievote": 1}


def test_a_group_task_is_sampled_by_whole_groups(tmp_path: Path, env: dict[str, str]) -> None:
    from tests.test_task_editreward_bench import TRIPLES, group_rows
    from tests.test_task_editreward_bench import write_parquet as write_editreward

    write_editreward(tmp_path / "erb" / "3pair" / "train-00000-of-00001.parquet", group_rows(TRIPLES, "3pair"))
    out = tmp_path / "runs"
    done = rrbench("run", "--task", "editreward-bench", "-T", "k=3", "--data", str(tmp_path / "erb"), "--model",
                   "random", "--limit", "7", "--subset", "random", "--quiet", "--output", str(out), env=env,
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (run_dir,) = _runs(out)
    ids = _record(run_dir)["spec"]["subset"]["ids"]
    groups = Counter(i.split("_")[0] for i in ids)
    assert len(ids) == 6 and set(groups.values()) == {3}  # two whole groups of C(3, 2) = 3 pairs; 7 fits no third


def test_a_spec_without_a_subset_keeps_the_hash_it_always_had() -> None:
    from rrbench.spec import RunSpec
    from rrbench.subset import allocate

    # the hash of this spec before the subset field existed: existing run directories keep resuming
    before = "48d316bddd0e572ca3e04e336477621ffd364a46f09ff2c220dc6204e3776985"
    assert RunSpec(task="sanity", model="random", task_args={"n": 10}).hash() == before
    assert RunSpec(task="sanity", model="random", task_args={"n": 10}, subset="first").hash() == before
    # largest remainder: exact shares 2.0, 1.2, 0.8 -> floors 2, 1, 0, and the one left goes to the largest rest
    assert allocate({"x": 5, "y": 3, "z": 2}, 4) == {"x": 2, "y": 1, "z": 1}


def test_subset_needs_a_limit(tmp_path: Path, env: dict[str, str]) -> None:
    done = rrbench("run", "--task", "sanity", "--model", "random", "--subset", "random", "--output",
                   str(tmp_path / "runs"), env=env, cwd=tmp_path)
    assert done.returncode == 2 and "--subset random picks --limit N samples; give --limit" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------------------------ Ctrl-C


def test_an_interrupted_runs_summary_is_its_run_json(tmp_path: Path, env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rrbench.cli", "run", "--task", "sanity", "--model", "sleepy", "-M", "delay=0.2",
         "-M", "batch_size=1", "--concurrency", "8", "--output", str(out)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        logs = list(out.glob("*/samples.jsonl"))
        if logs and len(logs[0].read_text().splitlines()) >= 6:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    (run_dir,) = _runs(out)
    record = _record(run_dir)
    lines = (run_dir / "samples.jsonl").read_text().splitlines()
    counts, stats = record["counts"], record["stats"]
    assert record["status"] == "interrupted" and counts["recorded"] == len(lines)
    assert f"coverage: {counts['recorded']}/{counts['expected']} samples recorded" in stdout
    # samples cancelled in flight were started but never recorded: they are not "new samples"
    assert stats["new_samples"] == len(lines)
    assert f"this session: {len(lines)} new samples, {stats['model_calls']} model calls" in stdout


# ------------------------------------------------------------------------------------------------ README


def test_readme_test_command_shows_install_progress_and_skip_reasons() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("<!-- test-command -->", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    (command,) = block.strip().splitlines()  # .ci/run runs this one line
    (install,) = re.findall(r"pip install ([^&]*)&&", command)
    assert "-e '.[test]'" in install and "-q" not in install.split()  # pip's download lines are shown
    assert "pytest" in command and "-rs" in command  # skip reasons (e.g. no chromium) are printed
    after = readme.split(block, 1)[1].split("\n## ", 1)[0]
    assert "`.ci/run` also installs Debian's `chromium`" in after  # what CI has that this command does not
