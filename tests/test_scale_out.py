"""docs/scale-out.md in miniature on one machine: its `<!-- tested: NAME -->` command blocks, run as written.

Each block is read from the page and run with only its addresses, ports, paths and process counts replaced, so the
runbook cannot drift from what is tested: two judge endpoints balanced by one `rrbench run`; a two-node Ray cluster
(`ray start --head` + `ray start --address`, two process groups of this machine) whose sanity-gen run equals a
one-process run, also after its worker node is killed mid-run and the command is run again; SFT on two "machines"
(two `accelerate launch` with machine ranks 0 and 1, one gloo CPU process each). The RL block is compared flag for
flag with the two-process launch that tests/test_rl_nft.py runs.

The Ray nodes are stopped by killing their own process groups, never with `ray stop` (which stops every Ray of the
machine, another test's too); the head gets a private temp dir and client-server port.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.judge_server import ScriptedJudge
from tests.test_torture import CRITIQUE

ROOT = Path(__file__).parent.parent
DOC = ROOT / "docs" / "scale-out.md"
BIN = Path(sys.executable).parent  # the console scripts (ray, rrbench, accelerate) of this environment
IMAGES = 80  # ray-generate: n=40 prompts x 2 images
# What two Ray nodes on one machine need beyond the page's commands (the page names them): one actor per node.
WORKER_ONE_MACHINE = ["--num-cpus", "1", "--disable-usage-stats"]


def blocks() -> dict[str, str]:
    """The page's tested blocks by name: the fenced block right after each `<!-- tested: NAME -->`."""
    found = re.findall(r"<!-- tested: ([\w-]+) -->\n```bash\n(.*?)```", DOC.read_text(), flags=re.S)
    return dict(found)


def commands(name: str, subs: Mapping[str, str] = {}) -> list[list[str]]:
    """The block's commands as argument lists: placeholders replaced, continuations joined, comments dropped, and
    each program resolved in this environment."""
    text = blocks()[name]
    for placeholder, value in subs.items():
        assert placeholder in text, f"{placeholder!r} is not in the {name} block"
        text = text.replace(placeholder, value)
    lines = text.replace("\\\n", " ").splitlines()
    argvs = [shlex.split(line, comments=True) for line in lines]
    return [[shutil.which(a[0], path=str(BIN)) or a[0], *a[1:]] for a in argvs if a]


def one(name: str, subs: Mapping[str, str] = {}) -> list[str]:
    (argv,) = commands(name, subs)
    return argv


def run_json(out: Path) -> dict[str, object]:
    (record,) = out.glob("*/run.json")
    return dict(json.loads(record.read_text()))


def index(out: Path) -> list[str]:
    (path,) = out.glob("*/images/index.jsonl")
    return sorted(path.read_text().splitlines())


# ------------------------------------------------------------------------------------------ 1. judge endpoints


def test_one_run_balances_over_two_judge_endpoints(tmp_path: Path) -> None:
    answer = CRITIQUE.format(fa=4, fb=2, fw="Image A", qa=3, qb=3, qw="tie")
    with ScriptedJudge(lambda _: answer) as first, ScriptedJudge(lambda _: answer) as second:
        argv = one("judge-replicas", {"http://NODE1:8000/v1": first.url, "http://NODE2:8000/v1": second.url,
                                      "runs/": str(tmp_path / "runs")})
        env = {**os.environ, "RRBENCH_CACHE": str(tmp_path / "cache.sqlite")}
        done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    record = run_json(tmp_path / "runs")
    assert record["status"] == "complete"
    assert record["counts"]["recorded"] == 16 and record["counts"]["failed"] == 0  # type: ignore[index]
    assert len(first.requests) + len(second.requests) == 16
    assert first.requests and second.requests  # 16 samples in flight at once: both replicas took some
    assert {r.body["model"] for r in first.requests + second.requests} == {"rationalrewards"}


# ------------------------------------------------------------------------------------------ 2. Ray cluster


@dataclass
class Cluster:
    address: str
    env: dict[str, str]
    temp: Path
    groups: list[int] = field(default_factory=list)  # process groups of the nodes this test started
    worker: int = 0  # the worker node's process group

    def start_worker(self) -> None:
        self.worker = start_node([*one("ray-worker", {"HEAD_IP:6379": self.address}), *WORKER_ONE_MACHINE],
                                 self.env)
        self.groups.append(self.worker)


def start_node(argv: list[str], env: dict[str, str]) -> int:
    """Run one `ray start` as the leader of a new process group and return that group: the daemons it leaves
    behind stay in it, so killing the group stops exactly this node (its actors exit with their raylet)."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-2000:]
    return proc.pid


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(pgid, signal.SIGKILL)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    temp = Path(tempfile.mkdtemp(prefix="rr-ray-"))  # short: Ray's socket paths must fit in 107 bytes
    token = temp / "auth_token"
    token.write_text(secrets.token_hex(32))
    (exports,) = commands("ray-env", {"/shared/ray/auth_token": str(token)})
    assert exports[0].endswith("export")
    env = {**os.environ, **dict(pair.split("=", 1) for pair in exports[1:]), "PYTHONUNBUFFERED": "1"}
    port = free_port()
    state = Cluster(f"127.0.0.1:{port}", env, temp)
    try:
        head = [*one("ray-head", {"6379": str(port)}), *WORKER_ONE_MACHINE, "--temp-dir", str(temp / "ray"),
                "--ray-client-server-port", str(free_port()), "--include-dashboard", "false"]
        state.groups.append(start_node(head, env))
        state.start_worker()
        yield state
    finally:
        for pgid in state.groups:
            kill_group(pgid)
        time.sleep(1)  # the raylets' children notice and exit
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The images/index.jsonl of the ray-generate command run in one process (no --ray, no --shards)."""
    out = tmp_path_factory.mktemp("one-process")
    argv = one("ray-generate", {"HEAD_IP:6379": "unused", "runs/": str(out)})
    at = argv.index("--ray")
    del argv[at:at + 4]  # --ray ADDRESS --shards N
    assert "--ray" not in argv and "--shards" not in argv
    done = subprocess.run([*argv, "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = index(out)
    assert len(lines) == IMAGES
    return lines


@pytest.mark.slow
def test_a_two_node_cluster_makes_the_images_of_one_process(cluster: Cluster, one_process: list[str],
                                                           tmp_path: Path) -> None:
    argv = one("ray-generate", {"HEAD_IP:6379": cluster.address, "runs/": str(tmp_path)})
    done = subprocess.run([*argv, "--quiet"], env=cluster.env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert index(tmp_path) == one_process
    record = run_json(tmp_path)
    assert record["status"] == "complete"
    assert record["generator"]["ray"] == {"shards": 2, "address": cluster.address}  # type: ignore[index]


@pytest.mark.slow
def test_losing_the_worker_node_mid_run_loses_nothing(cluster: Cluster, one_process: list[str],
                                                      tmp_path: Path) -> None:
    argv = [*one("ray-generate", {"HEAD_IP:6379": cluster.address, "runs/": str(tmp_path)}), "--quiet"]
    run = subprocess.Popen(argv, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not list(tmp_path.glob("*/images/index.jsonl")) or not index(tmp_path):  # the first image is stored
        assert run.poll() is None and time.monotonic() < deadline, "the run ended before any image was stored"
        time.sleep(0.05)
    kill_group(cluster.worker)  # the whole node: raylet, agents and the actor on it
    _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err[-2000:]
    lost = run_json(tmp_path)["counts"]["failed"]  # type: ignore[index]
    assert lost > 0 and len(index(tmp_path)) < IMAGES, "the worker was killed after the run had finished"

    cluster.start_worker()  # the node comes back, and the same command runs again
    again = subprocess.run(argv, env=cluster.env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert run_json(tmp_path)["counts"]["failed"] == 0  # type: ignore[index]
    lines = index(tmp_path)
    assert len({(json.loads(x)["id"], json.loads(x)["index"]) for x in lines}) == len(lines) == IMAGES
    assert lines == one_process


# ------------------------------------------------------------------------------------------ 3. accelerate


@pytest.mark.slow
def test_sft_on_two_machines_as_the_runbook_says(tmp_path: Path, tiny_vlm: Path) -> None:
    from tests.test_parrot_sft import _build, _config, _env

    built = _build(tmp_path, 4, kinds=(("pairwise", "t2i"),))
    subs = {"HEAD_IP": "127.0.0.1", "29500": str(free_port()), "--num_processes 16": "--num_processes 2",
            "OUT/build-sft": str(built), "/models/Qwen3-VL-8B-Instruct": str(tiny_vlm),
            "training/parrot/configs/sft-paper.yaml": str(_config(tmp_path, effective_batch_size=2)),
            "/shared/ckpt": str(tmp_path / "ckpt")}
    nodes = [subprocess.Popen(one(name, subs), cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for name in ("sft-node0", "sft-node1")]
    outs = [node.communicate(timeout=400)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    counts = json.loads((tmp_path / "ckpt" / "stage.json").read_text())["counts"]
    # one run of world size 2 (not two runs of 1): 2 steps of 2 rows cover the 4 rows once
    assert counts["world_size"] == 2 and counts["gradient_accumulation_steps"] == 1
    assert counts["global_step"] == 2 and (tmp_path / "ckpt" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "ckpt" / "checkpoint-2" / "trainer_state.json").read_text())["epoch"] == 1.0


def launch_flags(argv: list[str | None]) -> tuple[dict[str, str | None], list[str | None]]:
    """``accelerate launch`` options as {flag: value or None} and the script part from ``-m`` on."""
    start, end = argv.index("launch") + 1, argv.index("-m")
    flags: dict[str, str | None] = {}
    for i in range(start, end):
        token = argv[i]
        if isinstance(token, str) and token.startswith("--"):
            value = argv[i + 1] if i + 1 < end else None
            flags[token] = None if isinstance(value, str) and value.startswith("--") else value
    return flags, argv[end:]


def rl_test_launch() -> list[str | None]:
    """The launch list of test_two_processes_match_one_with_the_same_global_batch, read from its source: string
    constants as they are, anything computed (the executable, port, config path) as None."""
    tree = ast.parse((ROOT / "tests" / "test_rl_nft.py").read_text())
    (test,) = (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
               and n.name == "test_two_processes_match_one_with_the_same_global_batch")
    (launch,) = (n for n in ast.walk(test) if isinstance(n, ast.List)
                 and any(isinstance(e, ast.Constant) and e.value == "launch" for e in n.elts))
    return [e.value if isinstance(e, ast.Constant) and isinstance(e.value, str) else None for e in launch.elts]


def test_the_rl_runbook_command_is_the_two_process_launch_the_rl_test_runs() -> None:
    doc, doc_script = launch_flags(list(one("rl-node0")))
    sft, _ = launch_flags(list(one("sft-node0")))
    tested, tested_script = launch_flags(rl_test_launch())
    multi_node = {"--machine_rank", "--main_process_ip"}
    assert multi_node <= set(sft) and multi_node <= set(doc)  # the flags the SFT test runs on two machines
    assert doc["--num_machines"] == sft["--num_machines"] == "2"
    one_machine = {k: v for k, v in doc.items() if k not in multi_node}
    # what the RL test runs on one machine: 1 machine, 2 processes, its own port
    one_machine.update({"--num_machines": "1", "--num_processes": "2", "--main_process_port": None})
    assert one_machine == tested
    assert doc_script[:4] == tested_script[:4] == ["-m", "rrbench_train.cli", "rl", "--config"]
