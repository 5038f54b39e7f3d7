"""Scalar scoring sharded over Ray actors (rrbench.models._ray) on a local Ray cluster of this machine: the
samples.jsonl of one process, an actor killed mid-run losing only its batch (and nothing after a rerun), a batch that
raised retried one query at a time, and a served judge refused in one line.

Ray takes seconds to start, so the tests share one cluster (2 CPUs, one single-CPU actor per shard) started in this
process (and shut down with ray.shutdown, never `ray stop`, which would stop other tests' clusters); the runs join
it by its address, as the docs/scale-out.md `ray-score` block, read from the page, joins a cluster's head node.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rrbench.cli import main
from tests.conftest import free_port
from tests.ray_common import local_cluster, use_plugin

PLUGIN = Path(__file__).parent / "plugins" / "ray_scorers.py"
DOC = Path(__file__).parent.parent / "docs" / "scale-out.md"
N = 24  # sanity pairs: 4 photos x 6 damages, 48 queries
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(autouse=True)
def _crashy(monkeypatch: pytest.MonkeyPatch) -> None:
    use_plugin(monkeypatch, PLUGIN, "model", "crashy-iqa")


cluster = pytest.fixture(scope="module", name="cluster")(local_cluster)


def block(name: str) -> list[str]:
    """The one command of the page's `<!-- tested: NAME -->` block (as tests/test_scale_out.py reads them)."""
    found = dict(re.findall(r"<!-- tested: ([\w-]+) -->\n```bash\n(.*?)```", DOC.read_text(), flags=re.S))
    (argv,) = [shlex.split(line, comments=True) for line in found[name].replace("\\\n", " ").splitlines() if line]
    return argv


def command(address: str, out: Path) -> list[str]:
    """The ray-score block's arguments (after `rrbench`) with the head's address and the output folder here."""
    argv = [{"HEAD_IP:6379": address, "runs/": str(out)}.get(a, a) for a in block("ray-score")]
    assert argv[0] == "rrbench" and str(out) in argv and address in argv
    return [*argv[1:], "--quiet"]


def without_ray(argv: list[str]) -> list[str]:
    at = argv.index("--ray")
    assert argv[at + 2] == "--shards"
    return argv[:at] + argv[at + 4:]


def samples(out: Path) -> dict[str, dict[str, Any]]:
    """Each sample's record by id, without its timings (the only thing a run may change)."""
    (log,) = out.glob("*/samples.jsonl")
    records = {}
    for line in log.read_text().splitlines():
        record = json.loads(line)
        record.pop("latency_s", None)
        for trial in record.get("trials", ()):
            for judgement in trial.get("judgements", ()):
                judgement.pop("latency_s", None)
        records[record["id"]] = record
    return records


def run_json(out: Path) -> dict[str, Any]:
    (path,) = out.glob("*/run.json")
    return dict(json.loads(path.read_text()))


def scores(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {i: [t["prediction"] for t in r["trials"]] for i, r in records.items()}


@dataclass(frozen=True)
class OneProcess:
    dirname: str
    records: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def one_process(cluster: str, tmp_path_factory: pytest.TempPathFactory) -> OneProcess:
    """The ray-score command run in one process (no --ray, no --shards; no cache: the model answers each query)."""
    out = tmp_path_factory.mktemp("one-process")
    assert main([*without_ray(command(cluster, out)), "--no-cache"]) == 0
    records = samples(out)
    assert len(records) == N and all(r["trials"][0]["prediction"]["scores"] for r in records.values())
    assert run_json(out)["stats"]["model_calls"] == 2 * N
    (run_dir,) = out.iterdir()
    return OneProcess(run_dir.name, records)


@pytest.mark.slow
def test_the_doc_block_on_two_actors_writes_the_samples_of_one_process(
        cluster: str, one_process: OneProcess, tmp_path: Path) -> None:
    assert main(command(cluster, tmp_path)) == 0
    assert samples(tmp_path) == one_process.records
    assert next(tmp_path.glob("*/samples.jsonl")).parent.name == one_process.dirname  # sharding: not in the spec
    record = run_json(tmp_path)
    assert record["status"] == "complete" and record["counts"]["failed"] == 0
    assert record["model"]["ray"] == {"shards": 2, "address": cluster}
    assert record["stats"]["model_calls"] == 2 * N  # answered by the actors, none from the cache


@pytest.mark.slow
def test_a_model_reading_query_keys_answers_as_in_one_process(cluster: str, tmp_path: Path) -> None:
    """`random` seeds each answer from the query's key: the key travels with the query, not the image's path."""
    sharded = [a if a != "classical-iqa" else "random" for a in command(cluster, tmp_path / "ray")]
    assert "random" in sharded
    assert main(sharded) == 0
    assert main(without_ray([a if a != str(tmp_path / "ray") else str(tmp_path / "one") for a in sharded])) == 0
    assert samples(tmp_path / "ray") == samples(tmp_path / "one")


@pytest.mark.slow
def test_an_actor_killed_mid_run_fails_only_its_batch_and_a_rerun_loses_nothing(
        cluster: str, one_process: OneProcess, tmp_path: Path) -> None:
    once = tmp_path / "exited"
    argv = [a if a != "classical-iqa" else "crashy-iqa" for a in command(cluster, tmp_path / "runs")]
    argv += ["-M", "exit_on=astronaut", "-M", f"once={once}", "-M", "batch_size=4"]
    assert main(argv) == 0  # every sample recorded, some of them as failures
    assert once.exists()
    first = samples(tmp_path / "runs")
    failed = {i: r for i, r in first.items() if r.get("failure") or any(
        j.get("failure") for t in r["trials"] for j in t["judgements"])}
    assert 0 < len(failed) <= 4  # one batch of 4 queries: at most 4 pairs
    for record in failed.values():
        details = [j.get("failure_detail", "") for t in record["trials"] for j in t["judgements"] if j.get("failure")]
        assert details and all("died scoring this batch" in d and "SYSTEM_ERROR" in d for d in details), details
    assert scores({i: r for i, r in first.items() if i not in failed}) == scores(
        {i: r for i, r in one_process.records.items() if i not in failed})
    record = run_json(tmp_path / "runs")
    assert record["stats"]["actor_restarts"] == 1 and record["counts"]["failed"] == len(failed)

    assert main(argv) == 0  # the same command: only the failed samples are scored again
    assert scores(samples(tmp_path / "runs")) == scores(one_process.records)
    record = run_json(tmp_path / "runs")
    assert record["counts"]["failed"] == 0 and record["stats"]["new_samples"] == len(failed)


@pytest.mark.slow
def test_a_batch_that_raised_is_retried_one_query_at_a_time(
        cluster: str, one_process: OneProcess, tmp_path: Path) -> None:
    argv = [a if a != "classical-iqa" else "crashy-iqa" for a in command(cluster, tmp_path)]
    assert main([*argv, "-M", "raise_on=tabby cat", "-M", "batch_size=4"]) == 0
    records = samples(tmp_path)
    cats = {i for i, r in records.items() if "tabby cat" in r["prompt"]}
    assert len(cats) == N // 4
    for i, record in records.items():
        if i in cats:
            (trial,) = record["trials"]
            assert {j.get("failure_detail") for j in trial["judgements"]} == {
                "RuntimeError: crashy-iqa cannot score 'tabby cat'"}
        else:  # its batch-mates were scored one by one: as in one process
            assert [t["prediction"] for t in record["trials"]] == [
                t["prediction"] for t in one_process.records[i]["trials"]]


def test_a_served_judge_with_ray_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "--task", "sanity", "-T", "n=2", "--model", "rationalrewards-8b", "-M", "engine=http",
            "-M", "served_model=rr", "--base-url", f"http://127.0.0.1:{free_port()}/v1", "--ray",
            "--shards", "2", "--output", str(tmp_path / "runs"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--ray shards in-process scalar models only" in err
    assert "several --base-url" in err
    assert not (tmp_path / "runs").exists()  # refused before anything was written
