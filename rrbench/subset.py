"""Which samples a ``--limit N`` run judges: the first N (the default), or a seeded subset that dataset order cannot
bias (``--subset random|stratified``, with ``--seed``).

* ``first``: the first N samples in the task's order (``--limit`` alone; no record in the spec).
* ``random``: the N samples whose ``sha256(seed, unit)`` is smallest. A sample's rank depends only on its own id
  and the seed, so the choice depends on which samples the data holds, never on their order, and (for single
  samples) a larger N picks a superset of a smaller N's samples.
* ``stratified``: proportional allocation over strata, each sample's stratum being its ``meta.category`` (where the
  task sets one) crossed with its human label class (winner position, or the tie kind, or the label kind for
  rankings). Stratum s gets ``N * n_s / n`` samples, rounded by largest remainder (equal remainders are ordered by
  ``sha256(seed, stratum)``, so no stratum is favoured by its name); within a stratum the ``random`` order picks.
  Each stratum gets the share a uniform sample gets on average, without its spread: quick estimates vary less,
  and rare label classes (ties) are not lost.

Units: a task whose samples carry ``meta.group`` (EditReward-Bench K=3/4, where a group is right only when all its
pairs are) is sampled by whole groups, ranked by ``sha256(seed, group)``; a group that would overshoot its share is
skipped for the next that fits. Every other task samples single samples (the unit is the sample id).

The choice needs every sample's id, label and category, so :func:`resolve` reads the task once before the run
(nothing is decoded, and only those three fields of each sample are kept). It records ``{"method", "seed", "asked",
"ids"}`` in the spec (ids sorted) and sets ``limit`` to the number of ids, so the run directory's hash covers the ids
and the run expects exactly what it judges; resuming recomputes the same ids from the same data and finds the same
directory. The runner then judges those samples in the task's order (:func:`take`), stopping once all are seen.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rrbench.spec import RunSpec
from rrbench.types import Sample, Task, UserError


@dataclass(frozen=True)
class Unit:
    """What is drawn: one sample, or one group of samples (all or none)."""

    key: str
    ids: tuple[str, ...]
    stratum: str


def method_of(spec: RunSpec) -> str:
    subset = spec.subset
    method = subset.get("method") if isinstance(subset, Mapping) else subset
    return str(method or "first")


def resolve(spec: RunSpec, task: Task) -> RunSpec:
    """The spec with its subset chosen: ``subset`` becomes ``{"method", "seed", "asked", "ids"}`` and ``limit`` the
    number of ids (fewer than asked where the data holds fewer, or where whole groups fit fewer), so the run expects
    exactly the samples it judges. A no-op for ``first`` and for a spec already resolved (a run.json replayed).
    Reads every sample of the task once; nothing is decoded."""
    method = method_of(spec)
    if method == "first":
        return dataclasses.replace(spec, subset=None)
    subset = spec.subset
    if isinstance(subset, Mapping) and isinstance(subset.get("ids"), list) and subset.get("seed") == spec.seed \
            and spec.limit == len(subset["ids"]):
        return spec
    assert spec.limit is not None  # RunSpec refuses a subset without a limit
    data = Path(spec.data) if spec.data else None
    ids = choose(method, task.load(data), spec.limit, spec.seed)
    chosen = {"method": method, "seed": spec.seed, "asked": spec.limit, "ids": ids}
    return dataclasses.replace(spec, subset=chosen, limit=max(1, len(ids)))


def take(samples: Iterable[Sample], spec: RunSpec) -> Iterator[Sample]:
    """The samples the run judges, in the task's order: the chosen subset's, else the first ``--limit``."""
    subset = spec.subset
    if isinstance(subset, Mapping):
        return _only(samples, frozenset(subset["ids"]))
    if isinstance(subset, str) and subset != "first":
        raise UserError(f"--subset {subset} was not resolved before the run (rrbench.subset.resolve)")
    iterator = iter(samples)
    return itertools.islice(iterator, spec.limit) if spec.limit else iterator


def _only(samples: Iterable[Sample], wanted: frozenset[str]) -> Iterator[Sample]:
    left = len(wanted)
    for sample in samples:
        if sample.id in wanted:
            yield sample
            left -= 1
            if left == 0:
                return  # every chosen sample is out: the rest of the data is not read


def choose(method: str, samples: Iterable[Sample], n: int, seed: int) -> list[str]:
    """The sorted ids of ``n`` samples (fewer only when the data holds fewer), chosen by ``method``."""
    units = _units(samples, stratified=method == "stratified")
    total = sum(len(u.ids) for u in units)
    if total <= n:
        return sorted(i for u in units for i in u.ids)
    if method == "random":
        return _fill(units, n, seed)
    strata: dict[str, list[Unit]] = {}
    for unit in units:
        strata.setdefault(unit.stratum, []).append(unit)
    sizes = {s: sum(len(u.ids) for u in us) for s, us in strata.items()}
    quotas = allocate(sizes, n, seed)
    return sorted(i for s, us in strata.items() for i in _fill(us, quotas[s], seed))


def allocate(sizes: Mapping[str, int], n: int, seed: int = 0) -> dict[str, int]:
    """Largest-remainder (Hamilton) apportionment of ``n`` over strata of the given sizes; equal remainders are
    taken in the seeded order of the strata's names."""
    total = sum(sizes.values())
    exact = {s: n * size / total for s, size in sizes.items()}
    quotas = {s: int(v) for s, v in exact.items()}
    short = n - sum(quotas.values())
    for s in sorted(exact, key=lambda s: (-(exact[s] - quotas[s]), rank(seed, s)))[:short]:
        quotas[s] += 1
    return quotas


def rank(seed: int, key: str) -> str:
    """A unit's place in the seeded order: a hash of the seed and the unit's own key, nothing else."""
    return hashlib.sha256(f"{seed}\x1f{key}".encode()).hexdigest()


def _fill(units: list[Unit], n: int, seed: int) -> list[str]:
    """Units in seeded order while they fit in ``n`` samples (a group that would overshoot is skipped)."""
    if all(len(u.ids) == 1 for u in units):  # single samples: the n smallest ranks, without sorting them all
        return sorted(u.ids[0] for u in heapq.nsmallest(n, units, key=lambda u: rank(seed, u.key)))
    chosen: list[str] = []
    for unit in sorted(units, key=lambda u: rank(seed, u.key)):
        if len(chosen) + len(unit.ids) <= n:
            chosen += unit.ids
        if len(chosen) == n:
            break
    return sorted(chosen)


def _units(samples: Iterable[Sample], stratified: bool) -> list[Unit]:
    """Only each sample's id, category and label class are kept: a sample read from parquet holds its images'
    bytes, so the samples themselves are dropped as they stream by."""
    groups: dict[str, list[tuple[str, str, str]]] = {}
    for sample in samples:
        group = sample.meta.get("group")
        key = f"group:{group}" if group is not None else f"sample:{sample.id}"
        label = sample.label
        kind = f"winner:{label.winner}" if label.winner is not None else label.kind.value
        groups.setdefault(key, []).append((sample.id, sample.category or "", kind))
    units = []
    for key, members in groups.items():
        members.sort()  # a group's stratum must not depend on the order of its rows
        units.append(Unit(key, tuple(m[0] for m in members), _stratum(members) if stratified else ""))
    return units


def _stratum(members: list[tuple[str, str, str]]) -> str:
    """``category|label class``; a group (several samples) by its category alone."""
    _, category, kind = members[0]
    return category if len(members) > 1 else f"{category}|{kind}"


def describe(spec: RunSpec, size: int | None) -> str | None:
    """One line saying which samples a subset run judges (None for the first N)."""
    subset: Any = spec.subset
    if not isinstance(subset, Mapping):
        return None
    of = f" of {size:,}" if size is not None else ""
    return (f"subset: {subset['method']} {len(subset['ids']):,}{of} samples (seed {subset['seed']}; "
            "ids in run.json spec.subset)")
