"""Generation sharded over Ray actors (rrbench.generators._ray) on a local Ray cluster of this machine: the same bytes
as one process, a dead or hung actor failing only its batch, and the set-up errors as one line.

Ray takes seconds to start, so the tests share one cluster (2 CPUs, one single-CPU actor per shard); only the first
test starts its own, to check that a pool stops the Ray it started.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import ray

from rrbench import registry
from rrbench.generators._base import Generated, Generator, ImageRequest, image_seed
from rrbench.generators._pool import GeneratorPool
from rrbench.generators._ray import RayGeneratorPool
from rrbench.types import FailureKind, UserError
from tests.conftest import free_port
from tests.ray_common import local_cluster, use_plugin

PLUGIN = Path(__file__).parent / "plugins" / "ray_generators.py"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(autouse=True)
def _crashy(monkeypatch: pytest.MonkeyPatch) -> None:
    use_plugin(monkeypatch, PLUGIN, "generator", "crashy")


cluster = pytest.fixture(scope="module", name="cluster")(local_cluster)


def requests(t2i: int = 8, edit: int = 4, images: int = 2) -> list[ImageRequest]:
    """sanity-gen's text-to-image and editing samples (the sources are rendered images that must travel)."""
    out = []
    for variant, n in (("t2i", t2i), ("edit", edit)):
        if not n:
            continue
        task = registry.get("task", "sanity-gen").build(variant=variant, n=n, images_per_prompt=images)
        for sample in task.load(None):
            out += [ImageRequest(sample.id, i, image_seed(0, sample.id, i), sample.prompt, sample.source, sample.meta)
                    for i in range(images)]
    return out


async def _all(pool: GeneratorPool | RayGeneratorPool, asked: Sequence[ImageRequest]) -> list[Generated]:
    try:
        return list(await asyncio.gather(*(pool.submit(r) for r in asked)))
    finally:
        await pool.aclose()


def one_process(generator: Generator, asked: Sequence[ImageRequest]) -> list[Generated]:
    generator.start()
    return asyncio.run(_all(GeneratorPool(generator), asked))


def sharded(pool: RayGeneratorPool, asked: Sequence[ImageRequest]) -> list[Generated]:
    return asyncio.run(_all(pool, asked))


@pytest.mark.slow
def test_two_actors_make_the_bytes_of_one_process_and_stop_the_ray_they_started() -> None:
    asked = requests()
    expected = one_process(registry.get("generator", "painter").build(), asked)
    owned = not ray.is_initialized()  # this test alone starts its own (unless another test's cluster is up)
    pool = RayGeneratorPool("painter", {}, shards=2)
    made = sharded(pool, asked)
    assert all(e.ok for e in expected)
    assert [m.png for m in made] == [e.png for e in expected]
    assert pool.model_calls == len(asked) and pool.fingerprint == GeneratorPool(
        registry.get("generator", "painter").build()).fingerprint
    if owned:
        assert not ray.is_initialized()


@pytest.fixture(scope="module")
def tiny_flux(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_diffusers import build_flux

    return build_flux(tmp_path_factory.mktemp("tiny-flux"))


@pytest.mark.slow
def test_tiny_flux_on_two_actors_makes_the_bytes_of_one_process(cluster: str, tiny_flux: Path) -> None:
    args = {"path": str(tiny_flux), "steps": 2, "width": 32, "height": 32, "batch_size": 2}
    prompts = ["a photo of a cat", "a red rocket in the sky", "a blue cup of coffee", "a dog on the sofa"]
    asked = [ImageRequest(f"s{s}", i, image_seed(0, f"s{s}", i), prompt)
             for s, prompt in enumerate(prompts) for i in range(2)]
    expected = one_process(registry.get("generator", "flux-dev").build(**args), asked)
    pool = RayGeneratorPool("flux-dev", args, shards=2)
    made = sharded(pool, asked)
    assert all(e.ok for e in expected)
    assert [m.png for m in made] == [e.png for e in expected]
    assert pool.describe()["settings"]["device"] == "cpu" and pool.describe()["ray"] == {"shards": 2, "address": None}


@pytest.mark.slow
def test_a_dead_actor_fails_only_its_batch_and_the_run_goes_on(cluster: str) -> None:
    asked = requests(t2i=12, edit=0)
    dies, raises = asked[5].prompt, asked[16].prompt
    pool = RayGeneratorPool("crashy", {"exit_on": dies, "raise_on": raises, "batch_size": 4}, shards=2)
    made = sharded(pool, asked)
    expected = one_process(registry.get("generator", "crashy").build(batch_size=4), asked)

    died = [i for i, m in enumerate(made) if m.detail and "died" in m.detail]
    assert {i for i, r in enumerate(asked) if r.prompt == dies} <= set(died)
    assert len(died) <= 4  # one batch
    assert all(made[i].failure is FailureKind.ERROR and "SYSTEM_ERROR" in str(made[i].detail) for i in died)
    for i, (request, answer) in enumerate(zip(asked, made, strict=True)):
        if request.prompt == raises:  # its batch was retried one image at a time: only its own images fail
            assert answer.failure is FailureKind.ERROR
            assert answer.detail == f"RuntimeError: crashy cannot paint {raises!r}"
        elif i not in died:
            assert answer.png == expected[i].png
    assert pool.restarts == 1


@pytest.mark.slow
def test_a_call_past_its_deadline_kills_its_actor_and_times_out_only_its_batch(cluster: str) -> None:
    asked = requests(t2i=6, edit=0, images=1)
    pool = RayGeneratorPool("crashy", {"hang_on": asked[0].prompt, "batch_size": 1}, shards=2, call_timeout_s=3)
    made = sharded(pool, asked)
    assert made[0].failure is FailureKind.TIMEOUT
    assert all(m.ok for m in made[1:])
    assert pool.restarts == 1 and pool.abandoned_calls == 1


@pytest.mark.slow
def test_rrbench_generate_with_ray_makes_the_run_of_one_process(cluster: str, tmp_path: Path) -> None:
    from rrbench.cli import main

    demo = ["generate", "--task", "sanity-gen", "--generator", "painter", "-T", "n=6", "-T", "images_per_prompt=2",
            "--quiet"]
    assert main([*demo, "--output", str(tmp_path / "one")]) == 0
    assert main([*demo, "--output", str(tmp_path / "ray"), "--ray", "--shards", "2"]) == 0
    runs = {name: next((tmp_path / name).glob("*/images")).parent for name in ("one", "ray")}
    assert runs["one"].name == runs["ray"].name  # sharding is no part of the spec
    index = {name: sorted((run / "images" / "index.jsonl").read_text().splitlines()) for name, run in runs.items()}
    assert index["one"] == index["ray"] and len(index["one"]) == 12
    record = json.loads((runs["ray"] / "run.json").read_text())
    assert record["generator"]["ray"] == {"shards": 2, "address": None} and record["status"] == "complete"


def test_a_generator_that_cannot_start_is_one_line(cluster: str) -> None:
    pool = RayGeneratorPool("crashy", {"fail_start": True}, shards=2)
    with pytest.raises(UserError, match=r"failed to start on Ray actor \d: UserError: crashy: weights not found"):
        asyncio.run(_started(pool))


async def _started(pool: RayGeneratorPool) -> None:
    try:
        await pool.astart()
    finally:
        await pool.aclose()


def test_set_up_mistakes_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match="--shards must be a positive integer"):
        RayGeneratorPool("painter", {}, shards=0)
    pool = RayGeneratorPool("painter", {}, shards=1, address=f"127.0.0.1:{free_port()}")
    with pytest.raises(UserError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:"):
        asyncio.run(_started(pool))
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(UserError, match=r"ray is not installed: pip install 'rrbench\[ray\]'"):
        RayGeneratorPool("painter", {}, shards=2)
