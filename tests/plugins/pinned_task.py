"""`sanity-pinned`: the embedded sanity task with a declared official content fingerprint (TaskInfo.fingerprint),
for the test that a run whose data hashes otherwise is marked partial ("content differs")."""

from __future__ import annotations

import dataclasses

from rrbench.registry import task
from rrbench.tasks.sanity import sanity
from rrbench.types import Task


@task("sanity-pinned", description="test task: sanity (n=8, 64 px) with a pinned content fingerprint")
def sanity_pinned(fingerprint: str = "", seed: int = 0) -> Task:
    base = sanity(size=64, n=8, seed=seed)
    info = dataclasses.replace(base.info, fingerprint=fingerprint or None)
    return dataclasses.replace(base, name="sanity-pinned", info=info)
