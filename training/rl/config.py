"""The RL run's configuration: typed dataclasses read from YAML, every key checked (an unknown key is a UserError
naming the known ones), ``a.b=value`` overrides from the command line. docs/rl.md lists every key.

One epoch = ``groups_per_epoch`` groups × ``group_size`` samples (the global batch, over all processes) sampled with
the old policy, rewarded, and trained on with one optimizer step, as the paper's released trainers do.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rrbench
from rrbench import UserError

PRESETS = Path(__file__).parent / "presets"


@dataclass
class GeneratorConfig:
    """An rrbench generator name and its pipeline folder (a local folder or a cached hub id)."""

    name: str = "flux-dev"
    path: str = ""
    revision: str | None = None
    dtype: str = "auto"  # auto: bf16 on a GPU, fp32 on the CPU
    resolution: int = 512
    guidance: float | None = None  # Flux/Kontext: distilled guidance; SD3, Qwen: CFG scale; None: the adapter's
    max_sequence_length: int | None = None  # text tokens; None: the adapter's (Flux, Qwen-Image 512, SD3 256, ...)
    gradient_checkpointing: bool = False


@dataclass
class LoraConfig:
    rank: int = 64  # the paper's 64/128; the released code's 32/64 is `lora.rank=32 lora.alpha=64`
    alpha: int = 128
    targets: list[str] | None = None  # None: the generator's own (its adapter's default_targets)
    init_scale: float = 0.0  # > 0: lora_B drawn from N(0, init_scale) (tests); 0: peft's B = 0, the base model


@dataclass
class DataConfig:
    """Prompts from an rrbench generation task (groups keyed by sample id), a prompt file (JSONL rows with ``id``,
    ``prompt`` and, for editing, ``source``: image paths inside the file's folder) or the released RL prompt set."""

    task: str | None = None
    task_args: dict[str, Any] = field(default_factory=dict)
    file: str | None = None
    # the released RL prompt set: its hub id (TIGER-Lab/RationalRewards_DiffusionNFT_TrainData, from the local cache
    # or downloaded) or a local copy; its t2i/ or edit/ part by the generator's kind, the ``split`` file
    released: str | None = None
    split: str = "train"
    data_dir: str | None = None  # a local copy of the task's data (rrbench's --data)
    limit: int | None = None
    heldout: int = 0  # rows kept out of training for the held-out monitor (the last ones, after a seeded shuffle)


@dataclass
class SamplingConfig:
    group_size: int = 8
    groups_per_epoch: int = 64
    steps: int = 10
    batch_size: int = 4  # images per denoiser call while sampling, per process


@dataclass
class TrainConfig:
    epochs: int = 300  # = optimizer steps
    lr: float = 3e-4
    weight_decay: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float = 1.0
    batch_size: int = 4  # samples per forward/backward, per process
    ema_decay: float = 0.9  # EMA of the trained LoRA (for evaluation and the saved LoRA); 0 turns it off
    max_nan_steps: int = 3  # optimizer steps in a row skipped for a non-finite loss before the run stops
    save_every: int = 10
    eval_every: int = 0  # held-out monitor interval (0: never)


@dataclass
class NFTConfig:
    beta: float = 1.0
    kl: float = 1e-4
    old_rate: float = 0.001  # old update η = min(old_rate · step, old_max)
    old_max: float = 0.5
    adv_clip: float = 5.0
    std: str = "global"  # global (the reference) | group
    timesteps: int = 1  # σ drawn per sample per optimizer step (each a forward/backward on fresh noise)
    ban_std: float = 0.05  # a group with std below this and mean above ban_mean is never sampled again
    ban_mean: float = 0.9


@dataclass
class GRPOConfig:
    noise_level: float = 0.7
    clip_range: float = 1e-4
    kl: float = 0.04
    adv_clip: float = 5.0
    std: str = "group"
    timestep_fraction: float = 1.0  # share of the SDE steps trained on
    cfg: float = 1.0


@dataclass
class RewardRetryConfig:
    """A reward that fails for a whole epoch (a server down) is retried after a pause; then the run stops."""

    retries: int = 3
    pause_s: float = 30.0
    max_failure_rate: float = 0.5  # an epoch with more failed rewards than this is retried


@dataclass
class RLConfig:
    algorithm: str = "nft"
    seed: int = 0
    output_dir: str = "runs/rl"
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    reward: dict[str, Any] = field(default_factory=dict)  # passed to rrbench_train.rl.reward.RewardConfig
    reward_retry: RewardRetryConfig = field(default_factory=RewardRetryConfig)
    monitor: dict[str, Any] = field(default_factory=dict)  # passed to rrbench_train.rl.monitor.Monitor
    data: DataConfig = field(default_factory=DataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    nft: NFTConfig = field(default_factory=NFTConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)

    @property
    def global_batch(self) -> int:
        return self.sampling.group_size * self.sampling.groups_per_epoch

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------------ reading


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RLConfig:
    """A YAML file (or a preset name) plus ``a.b=value`` overrides (values parsed as YAML), checked."""
    import yaml

    data: dict[str, Any] = {}
    if path is not None:
        file = _find(path)
        try:
            loaded = yaml.safe_load(file.read_text())
        except yaml.YAMLError as exc:
            raise UserError(f"{file}: not valid YAML ({' '.join(str(exc).split())[:200]})") from None
        if not isinstance(loaded, dict):
            raise UserError(f"{file}: a config is a YAML mapping, got {type(loaded).__name__}")
        data = loaded
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"override {item!r} must look like key.sub=value")
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"override {item!r}: {part} is not a section")
        node[leaf] = rrbench.parse_value(raw)  # as rrbench's -T/-M values: YAML scalars, [lists], {mappings}
    config = _build(RLConfig, data, "")
    check(config)
    return config


def _find(path: str | Path) -> Path:
    file = Path(path).expanduser()
    if file.is_file():
        return file
    preset = PRESETS / f"{path}.yaml"
    if preset.is_file():
        return preset
    known = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))
    raise UserError(f"config {path} not found (a YAML file, or a preset: {known})")


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise UserError(f"config {where or 'file'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        known = ", ".join(sorted(fields))
        raise UserError(f"config {where or 'top level'}: unknown key {unknown[0]!r} (known: {known})")
    values = {name: _value(hints[name], value, f"{where}{name}") for name, value in data.items()}
    return cls(**values)


def _value(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _build(hint, value if value is not None else {}, where + ".")
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        origin = typing.get_origin(option) or option
        if origin is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin in (str, bool, dict, list) and isinstance(value, origin):
            return value
    raise UserError(f"config {where}: expected {_name(hint)}, got {value!r}")


def _name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def check(config: RLConfig) -> None:
    """Values that are well-typed but meaningless, each one line."""
    positive = {"sampling.group_size": config.sampling.group_size, "sampling.groups_per_epoch":
                config.sampling.groups_per_epoch, "sampling.steps": config.sampling.steps,
                "sampling.batch_size": config.sampling.batch_size, "train.batch_size": config.train.batch_size,
                "train.epochs": config.train.epochs, "lora.rank": config.lora.rank,
                "nft.timesteps": config.nft.timesteps, "generator.resolution": config.generator.resolution}
    for key, value in positive.items():
        if value < 1:
            raise UserError(f"config {key} must be at least 1, got {value}")
    if config.algorithm not in ("nft", "grpo"):
        raise UserError(f"config algorithm must be nft or grpo, got {config.algorithm!r}")
    if config.sampling.group_size < 2:
        raise UserError("config sampling.group_size must be at least 2 (advantages compare samples of a group)")
    if config.nft.std not in ("global", "group") or config.grpo.std not in ("global", "group"):
        raise UserError("config nft.std / grpo.std must be global or group")
    if not 0.0 <= config.train.ema_decay < 1.0:
        raise UserError(f"config train.ema_decay must be in [0, 1), got {config.train.ema_decay}")
    if not 0.0 <= config.nft.old_max <= 1.0 or config.nft.old_rate < 0:
        raise UserError("config nft.old_max must be in [0, 1] and nft.old_rate at least 0")
    named = [k for k in ("task", "file", "released") if getattr(config.data, k) is not None]
    if len(named) != 1:
        raise UserError("config data: name exactly one of data.task (an rrbench generation task), data.file (a JSONL "
                        f"prompt file) or data.released (the released RL prompt set); got {', '.join(named) or 'none'}")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", config.data.split):
        raise UserError(f"config data.split must be a split name such as train or test, got {config.data.split!r}")
    if config.generator.resolution % 16:
        raise UserError(f"config generator.resolution must be a multiple of 16, got {config.generator.resolution}")
