"""Shared by the Ray tests (test_generation_ray, test_scoring_ray): a test plug-in registered here and named to the
actors, and one local Ray cluster of this machine per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


def use_plugin(monkeypatch: pytest.MonkeyPatch, plugin: Path, kind: str, name: str) -> None:
    """Register ``plugin`` in this process (once) and name it to the actors through $RRBENCH_PLUGINS."""
    from rrbench import registry

    monkeypatch.setenv("RRBENCH_PLUGINS", str(plugin))
    registry.load_plugins()
    if registry.find(kind, name) is None:
        registry._import_plugin(str(plugin), "test")


def local_cluster() -> Iterator[str]:
    """A local cluster (2 CPUs, no dashboard) for the module's tests; yields its GCS address (what `--ray` takes)."""
    import ray

    from rrbench.generators._ray import LOCAL_OBJECT_STORE_BYTES

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=LOCAL_OBJECT_STORE_BYTES, configure_logging=False)
    yield str(ray.get_runtime_context().gcs_address)
    ray.shutdown()
