"""The RL reward: any rrbench reward model, judged in a background thread, mapped to one number per image or a
counted failure (never a made-up 0.0).

``Reward(config).submit(prompts, images, sources, keys)`` returns at once with a ``Future``; the images are judged
in chunks (``batch_size``) by ``rrbench.RewardFunction`` instances (``concurrency`` chunks at once) while the
trainer samples its next batch. Each image gets a ``RewardResult``: the mapped value, the critic's aspect scores,
or the failure kind (``http``, ``timeout``, ``parse``, ... from rrbench; ``all_na``, ``no_aspects``,
``no_score``, ``non_finite``, ``error`` from here). The trainer masks failures out of its group statistics.

Mappings (``mapping``):

- ``mean-1-over-3`` (the paper's): r = (weighted mean of the selected aspects' 1-4 scores - 1) / 3, in [0, 1].
  ``na: skip`` (the reference) leaves N/A aspects out; ``na: zero`` counts an N/A aspect as the floor (score 1,
  which maps to 0), so r stays in [0, 1]. Every selected aspect N/A under ``skip``: failure ``all_na``.
- ``score``: the model's own score (a scalar reward model: PickScore, HPSv3, ImageReward, ...).

The reference trainers use {Text Faithfulness, Physical and Visual Quality, Text Rendering} for both t2i and edit
(Image Faithfulness ignored) and do not clamp scores to [1, 4]. Here the default edit list has all four aspects
(as Flow-Factory), and ``clamp`` (default on) bounds each aspect to [1, 4]. rrbench's critic parser already clamps
out-of-range aspect scores and flags them (``clamped:<aspect>``, counted in ``stats()["clamped"]``), so with the
critic ``clamp`` only matters for plug-in models that report aspects of their own.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import math
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import rrbench
from rrbench import UserError

TF, IF, PVQ, TR = "Text Faithfulness", "Image Faithfulness", "Physical and Visual Quality", "Text Rendering"
CRITIC_ASPECTS = (TF, IF, PVQ, TR)
DEFAULT_ASPECTS = {"t2i": (TF, PVQ, TR), "edit": (TF, IF, PVQ, TR)}
REFERENCE_ASPECTS = (TF, PVQ, TR)  # the released trainers' reward, for t2i and edit alike
MAPPINGS = ("mean-1-over-3", "score")
NA_POLICIES = ("skip", "zero")
SCORE_MIN, SCORE_MAX = 1.0, 4.0
# failure kinds added here (rrbench's own FailureKind values pass through unchanged)
ALL_NA, NO_ASPECTS, NO_SCORE, NON_FINITE, ERROR = "all_na", "no_aspects", "no_score", "non_finite", "error"
TIMEOUT = "timeout"
# worth asking again: the server or the network, not the answer
TRANSIENT = frozenset({"http", "timeout", "rate_limited", "error"})


@dataclass(frozen=True)
class RewardResult:
    """One image's reward: ``value`` (None exactly when ``failure`` is set), the critic's aspect scores (None =
    N/A; empty for scalar models or when nothing came back) and the failure kind with its detail."""

    value: float | None
    aspects: dict[str, float | None] = field(default_factory=dict)
    failure: str | None = None
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass
class RewardConfig:
    """The ``reward:`` block of an RL config. Unknown keys are refused (``from_dict``)."""

    model: str
    model_args: dict[str, Any] = field(default_factory=dict)
    generation: str = "t2i"
    aspects: list[str] | None = None  # None: DEFAULT_ASPECTS[generation]
    weights: dict[str, float] | None = None  # None: 1 for each aspect
    mapping: str | None = None  # None: mean-1-over-3 for rationalrewards-* critics, else score
    na: str = "skip"
    clamp: bool = True
    per_aspect_group_norm: bool = False
    batch_size: int = 32  # images per judge call (the reference's chunk size)
    concurrency: int = 1  # chunks judged at once, each by its own RewardFunction (an HTTP critic already sends a
    # chunk's requests in parallel; more than 1 suits several servers or a slow client)
    retries: int = 2  # re-asks of the images whose failure is transient (http, timeout, rate_limited, error)
    retry_wait_s: float = 1.0  # before the first re-ask; doubled each time
    timeout_s: float | None = None  # a deadline per submitted batch; images not judged by then fail as "timeout"
    health_timeout_s: float = 5.0  # per server, for healthy()

    def __post_init__(self) -> None:
        self._check()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "reward") -> RewardConfig:
        if not isinstance(data, Mapping):
            raise UserError(f"{where}: expected a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        if "model" not in data:
            raise UserError(f"{where}: 'model' is required (an rrbench reward model name; `rrbench ls models`)")
        try:
            return cls(**dict(data))
        except TypeError as exc:
            raise UserError(f"{where}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def aspect_list(self) -> tuple[str, ...]:
        return tuple(self.aspects) if self.aspects is not None else DEFAULT_ASPECTS[self.generation]

    @property
    def aspect_weights(self) -> dict[str, float]:
        given = self.weights or {}
        return {a: float(given.get(a, 1.0)) for a in self.aspect_list}

    @property
    def resolved_mapping(self) -> str:
        if self.mapping is not None:
            return self.mapping
        return "mean-1-over-3" if self.model.startswith("rationalrewards") else "score"

    def _check(self) -> None:
        def bad(message: str) -> UserError:
            return UserError(f"reward: {message}")

        if not isinstance(self.model, str) or not self.model:
            raise bad("'model' must be an rrbench reward model name")
        if not isinstance(self.model_args, dict):
            raise bad("'model_args' must be a mapping")
        if self.generation not in DEFAULT_ASPECTS:
            raise bad(f"'generation' must be t2i or edit, not {self.generation!r}")
        if self.mapping is not None and self.mapping not in MAPPINGS:
            raise bad(f"'mapping' must be one of {', '.join(MAPPINGS)}, not {self.mapping!r}")
        if self.na not in NA_POLICIES:
            raise bad(f"'na' must be one of {', '.join(NA_POLICIES)}, not {self.na!r}")
        if self.aspects is not None:
            if not isinstance(self.aspects, list) or not self.aspects:
                raise bad("'aspects' must be a non-empty list")
            for a in self.aspects:
                if a not in CRITIC_ASPECTS:
                    raise bad(f"unknown aspect {a!r} (the critic's: {', '.join(CRITIC_ASPECTS)})")
            if self.generation == "t2i" and IF in self.aspects:
                raise bad(f"{IF!r} is scored only for edits (generation: edit)")
            if len(set(self.aspects)) != len(self.aspects):
                raise bad("'aspects' lists an aspect twice")
        for a, w in (self.weights or {}).items():
            if a not in self.aspect_list:
                raise bad(f"a weight for {a!r}, which is not in the aspect list {list(self.aspect_list)}")
            if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
                raise bad(f"the weight of {a!r} must be a number >= 0, not {w!r}")
        if self.per_aspect_group_norm and self.resolved_mapping != "mean-1-over-3":
            raise bad("'per_aspect_group_norm' needs aspect scores (mapping: mean-1-over-3)")
        for name in ("batch_size", "concurrency"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(f"{name!r} must be an integer >= 1, not {value!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise bad(f"'retries' must be an integer >= 0, not {self.retries!r}")
        if self.timeout_s is not None and (not isinstance(self.timeout_s, int | float) or self.timeout_s <= 0):
            raise bad(f"'timeout_s' must be a positive number of seconds, not {self.timeout_s!r}")


# ------------------------------------------------------------------------------------------------- mapping


def aspect_reward(aspects: Mapping[str, float | None], weights: Mapping[str, float], na: str = "skip",
                  clamp: bool = True) -> float | None:
    """(weighted mean of the aspects' scores - 1) / 3; None when no aspect with a weight has a score (``skip``)."""
    total = weighted = 0.0
    for name, weight in weights.items():
        score = aspects.get(name)
        if score is None:
            if na == "skip":
                continue
            score = SCORE_MIN  # "zero": an N/A aspect is worth the floor, 0 after the mapping
        if clamp:
            score = min(max(score, SCORE_MIN), SCORE_MAX)
        weighted += weight * score
        total += weight
    if total == 0:
        return None
    return (weighted / total - SCORE_MIN) / (SCORE_MAX - SCORE_MIN)


def to_result(judgement: Any, config: RewardConfig) -> RewardResult:
    """One rrbench ``Judgement`` as a reward under ``config``'s mapping."""
    aspects = {str(k): (None if v is None else float(v)) for k, v in (judgement.aspects[0].items()
                                                                      if judgement.aspects else ())}
    failure = judgement.failure.value if judgement.failure is not None else None
    detail = judgement.failure_detail
    if config.resolved_mapping == "score":
        if failure is not None:
            return RewardResult(None, aspects, failure, detail)
        score = judgement.scores[0] if judgement.scores else None
        if score is None:
            return RewardResult(None, aspects, NO_SCORE, "the model gave no score")
        return _finite(float(score), aspects)
    # rrbench's critic reports "every aspect N/A" as a parse failure that keeps the aspects: re-read them here,
    # with this config's aspect list (which may differ from the model's own aggregation)
    if failure is not None and not (failure == "parse" and aspects):
        return RewardResult(None, aspects, failure, detail)
    if not aspects:
        return RewardResult(None, aspects, NO_ASPECTS, "the model reports no aspect scores (mapping: score?)")
    if any(v is not None and not math.isfinite(v) for v in aspects.values()):
        return RewardResult(None, aspects, NON_FINITE, "an aspect score is not finite")
    value = aspect_reward(aspects, config.aspect_weights, config.na, config.clamp)
    if value is None:
        return RewardResult(None, aspects, ALL_NA, f"every aspect of {list(config.aspect_list)} is N/A")
    return RewardResult(value, aspects)


def _finite(value: float, aspects: dict[str, float | None]) -> RewardResult:
    if not math.isfinite(value):
        return RewardResult(None, aspects, NON_FINITE, f"score {value}")
    return RewardResult(value, aspects)


def group_normalized(results: Sequence[RewardResult], keys: Sequence[str], config: RewardConfig,
                     eps: float = 1e-6) -> list[float | None]:
    """Per-aspect group normalisation: each aspect's score is standardised within its group (same key; failures and
    N/A left out), then the standardised aspects are combined with the config's weights (N/A handled as in the
    mapping). Failed images stay None. A constant aspect within a group contributes 0.

    Call it on the gathered batch (all processes) when ``per_aspect_group_norm`` is on, in place of the values."""
    if len(results) != len(keys):
        raise ValueError(f"{len(results)} results for {len(keys)} keys")
    weights = config.aspect_weights
    score = _aspect_reader(config)
    by_group: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if results[i].ok:
            by_group.setdefault(key, []).append(i)
    z: dict[tuple[int, str], float] = {}
    for members in by_group.values():
        for aspect in weights:
            values = {i: s for i in members if (s := score(results[i], aspect)) is not None}
            if not values:
                continue
            mean = sum(values.values()) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values.values()) / len(values))
            for i, v in values.items():
                z[i, aspect] = (v - mean) / (std + eps) if std > 0 else 0.0
    out: list[float | None] = []
    for i, result in enumerate(results):
        parts = [(weights[a], z[i, a]) for a in weights if (i, a) in z] if result.ok else []
        total = sum(w for w, _ in parts)
        out.append(sum(w * v for w, v in parts) / total if total > 0 else None)
    return out


def _aspect_reader(config: RewardConfig) -> Any:
    def score(result: RewardResult, aspect: str) -> float | None:
        value = result.aspects.get(aspect)
        if value is None:
            return None if config.na == "skip" else SCORE_MIN
        return min(max(value, SCORE_MIN), SCORE_MAX) if config.clamp else value

    return score


# ------------------------------------------------------------------------------------------------- the reward


@dataclass
class _Batch:
    prompts: list[str]
    images: list[Any]
    sources: list[list[Any]] | None
    keys: list[str]
    future: cf.Future[list[RewardResult]]


class Reward:
    """Judges submitted batches in the background, in submission order; see the module docstring."""

    def __init__(self, config: RewardConfig) -> None:
        self.config = config
        # Built here, so a bad model name, bad arguments or an unreachable server fail before training starts.
        self._judges: queue.Queue[Any] = queue.Queue()
        self._built: list[Any] = []
        try:
            for _ in range(config.concurrency):
                judge = rrbench.RewardFunction(config.model, generation=config.generation, **config.model_args)
                self._built.append(judge)
                self._judges.put(judge)
        except BaseException:
            self._close_judges()
            raise
        self._batches = cf.ThreadPoolExecutor(1, thread_name_prefix="reward-batch")  # one batch at a time, FIFO
        self._chunks = cf.ThreadPoolExecutor(config.concurrency, thread_name_prefix="reward-chunk")
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._busy_s = 0.0
        self._recent: deque[tuple[str, str, str | None]] = deque(maxlen=100)
        self._closed = False

    # -------------------------------------------------------------------------------------------- public
    def submit(self, prompts: Sequence[str], images: Sequence[Any], sources: Sequence[Sequence[Any]] | None,
               keys: Sequence[str]) -> cf.Future[list[RewardResult]]:
        """Start judging one batch; the future holds one ``RewardResult`` per image, in order."""
        if self._closed:
            raise RuntimeError("the reward is closed")
        n = len(images)
        if len(prompts) != n or len(keys) != n or (sources is not None and len(sources) != n):
            raise ValueError(f"reward.submit: {len(prompts)} prompts, {n} images, "
                             f"{'no' if sources is None else len(sources)} sources, {len(keys)} keys")
        future: cf.Future[list[RewardResult]] = cf.Future()
        batch = _Batch(list(prompts), list(images), None if sources is None else [list(s) for s in sources],
                       list(keys), future)
        self._batches.submit(self._run, batch)
        return future

    def __call__(self, prompts: Sequence[str], images: Sequence[Any], sources: Sequence[Sequence[Any]] | None,
                 keys: Sequence[str]) -> list[RewardResult]:
        """Judge one batch and wait (the same work as ``submit``)."""
        return self.submit(prompts, images, sources, keys).result()

    def stats(self) -> dict[str, int]:
        """Counts since the start: images, ok, failed, ``failed:<kind>`` per kind, retried, clamped, batches."""
        with self._lock:
            return dict(self._counts)

    @property
    def busy_s(self) -> float:
        """Seconds spent judging (batch wall time, summed): what the overlap with sampling hides."""
        with self._lock:
            return self._busy_s

    def recent_failures(self) -> list[tuple[str, str, str | None]]:
        """The last (key, failure kind, detail) triples, newest last (for the trainer's log)."""
        with self._lock:
            return list(self._recent)

    def servers(self) -> list[str]:
        urls = self.config.model_args.get("base_urls") or []
        single = self.config.model_args.get("base_url")
        return [str(u) for u in ([*urls, single] if single else urls)]

    def probe(self) -> dict[str, str | None]:
        """Each server of an HTTP reward model -> None if it answers, else why not. In-process models: {}."""
        return {url: _probe(url, self.config.health_timeout_s, self.config.model_args.get("api_key_env"))
                for url in self.servers()}

    def healthy(self) -> bool:
        """Whether every reward server answers (always true for in-process models). A trainer whose batch came back
        all failures asks this: false means pause (``wait_healthy``) and submit the same batch again, or stop."""
        return all(reason is None for reason in self.probe().values())

    def wait_healthy(self, max_wait_s: float, interval_s: float = 5.0) -> bool:
        """Probe until the servers answer or ``max_wait_s`` passes; whether they answer."""
        deadline = time.monotonic() + max_wait_s
        while True:
            if self.healthy():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(interval_s, left))

    def close(self) -> None:
        """Finish the batch being judged, drop queued ones (their futures are cancelled), close the models."""
        if self._closed:
            return
        self._closed = True
        self._batches.shutdown(wait=True, cancel_futures=True)
        self._chunks.shutdown(wait=True, cancel_futures=True)
        self._close_judges()

    def __enter__(self) -> Reward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------- workers
    def _close_judges(self) -> None:
        for judge in self._built:
            judge.close()

    def _run(self, batch: _Batch) -> None:
        if not batch.future.set_running_or_notify_cancel():
            return
        start = time.monotonic()
        try:
            results = self._judge_batch(batch, start)
        except BaseException as exc:  # a user error (the model refused its input): the trainer sees it raised
            batch.future.set_exception(exc)
            return
        finally:
            with self._lock:
                self._busy_s += time.monotonic() - start
        self._count(batch, results)
        batch.future.set_result(results)

    def _judge_batch(self, batch: _Batch, start: float) -> list[RewardResult]:
        n, size = len(batch.images), self.config.batch_size
        deadline = None if self.config.timeout_s is None else start + self.config.timeout_s
        results: list[RewardResult | None] = [None] * n
        pending = list(range(n))
        for attempt in range(self.config.retries + 1):
            if attempt:
                time.sleep(self.config.retry_wait_s * 2 ** (attempt - 1))
                with self._lock:
                    self._counts["retried"] += len(pending)
            chunks = [pending[i:i + size] for i in range(0, len(pending), size)]
            futures = {self._chunks.submit(self._judge_chunk, batch, chunk): chunk for chunk in chunks}
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, late = cf.wait(futures, timeout=left)
            for future in done:
                for i, result in zip(futures[future], future.result(), strict=True):
                    results[i] = result
            for future in late:
                future.cancel()
                for i in futures[future]:
                    results[i] = RewardResult(None, {}, TIMEOUT, f"not judged within timeout_s={self.config.timeout_s}")
            pending = [i for i in pending if _transient(results[i])]
            if late or not pending:
                break
        return [r if r is not None else RewardResult(None, {}, ERROR, "not judged") for r in results]

    def _judge_chunk(self, batch: _Batch, chunk: list[int]) -> list[RewardResult]:
        judge = self._judges.get()
        try:
            judgements = judge.judge([batch.prompts[i] for i in chunk], [batch.images[i] for i in chunk],
                                     None if batch.sources is None else [batch.sources[i] for i in chunk])
        except UserError:
            raise
        except Exception as exc:  # the model raised: this chunk's failure, recorded, never a number
            return [RewardResult(None, {}, ERROR, f"{type(exc).__name__}: {exc}") for _ in chunk]
        finally:
            self._judges.put(judge)
        if len(judgements) != len(chunk):
            return [RewardResult(None, {}, ERROR, f"{len(judgements)} judgements for {len(chunk)} images")
                    for _ in chunk]
        with self._lock:
            self._counts["clamped"] += sum(any(f.startswith("clamped:") for f in j.flags) for j in judgements)
        return [to_result(j, self.config) for j in judgements]

    def _count(self, batch: _Batch, results: list[RewardResult]) -> None:
        with self._lock:
            self._counts["batches"] += 1
            self._counts["images"] += len(results)
            for key, result in zip(batch.keys, results, strict=True):
                if result.ok:
                    self._counts["ok"] += 1
                else:
                    self._counts["failed"] += 1
                    self._counts[f"failed:{result.failure}"] += 1
                    self._recent.append((key, str(result.failure), result.detail))


def _transient(result: RewardResult | None) -> bool:
    return result is not None and result.failure is not None and result.failure in TRANSIENT


def _probe(url: str, timeout_s: float, api_key_env: str | None) -> str | None:
    request = urllib.request.Request(url.rstrip("/") + "/models")
    key = os.environ.get(api_key_env) if api_key_env else None
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read(1 << 16)
        return None
    except urllib.error.HTTPError as exc:  # it answered: up, unless it says it is failing
        return None if exc.code < 500 else f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"unreachable: {reason}"


def describe(config: RewardConfig) -> str:
    """One line for logs: model, mapping, aspects and weights."""
    mapping = config.resolved_mapping
    if mapping == "score":
        return f"{config.model}: its own score"
    return f"{config.model}: {mapping} over {json.dumps(config.aspect_weights)} (na={config.na}, clamp={config.clamp})"
