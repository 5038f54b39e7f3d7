"""PARROT 3b: SFT of the critic with TRL's ``SFTTrainer``, the paper's recipe as the default config.

``rrbench-train sft --data DATASET --model PATH_OR_ID [--config sft-paper.yaml|FILE] [--output-dir CKPT]`` trains
on a ``build-sft`` / ``import-sft`` dataset (prompt-completion, images in place; loss on the completion only). One
process runs as is; several through ``accelerate launch --config_file configs/accelerate/{ddp,deepspeed_zero3,
fsdp2}.yaml -m rrbench_train.cli sft ...``.

* Refused at start, one line: a ``max_length`` (truncation would drop image tokens), an unknown config key, a
  dataset without images or whose image blocks and images disagree.
* Every training batch is checked for image tensors (``pixel_values``, and image tokens in every row): a format
  mistake must not train a critic that never saw an image.
* Effective batch: ``gradient_accumulation_steps = ceil(effective_batch_size / (per_device x processes))`` unless
  set; the batch actually reached is recorded (it exceeds the asked one when the division is not exact).
* Resumable: the last complete checkpoint (``checkpoint-N`` with its ``trainer_state.json``) in the output
  directory is resumed automatically (``--no-resume`` starts over); an output directory made with another config
  or dataset is refused.
* The output directory is the final checkpoint (model, processor, tokenizer, chat template, generation config) that
  ``rrbench run --model rationalrewards-8b -M path=OUTPUT`` loads as is, plus ``stage.json`` (recipe, inputs, code
  versions, counts, losses) and one ``records.jsonl`` line per session.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import os
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from rrbench import UserError
from rrbench_train.parrot.build_sft import DATASET
from rrbench_train.parrot.stage import STAGE_JSON, StageDir, read_json

CONFIGS = Path(__file__).parent / "configs"
DEFAULT_CONFIG = "sft-paper.yaml"
VISION_MODULES = ("visual", "vision_tower", "vision_model", "multi_modal_projector", "mm_projector")
# what a final checkpoint must hold for rrbench (AutoProcessor + AutoModelForImageTextToText) to load it as is
# (each entry: the alternatives transformers writes or reads)
CHECKPOINT_FILES = (("config.json",), ("generation_config.json",),
                    ("model.safetensors", "model.safetensors.index.json"),
                    ("processor_config.json", "preprocessor_config.json"), ("tokenizer_config.json",),
                    ("chat_template.jinja", "chat_template.json"))


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The training recipe (defaults: the paper's; ``configs/sft-paper.yaml`` spells them out)."""

    model: str = "Qwen/Qwen3-VL-8B-Instruct"
    freeze_vision: bool = True
    learning_rate: float = 1e-5
    lr_scheduler_type: str = "cosine"
    warmup_fraction: float = 0.05
    weight_decay: float = 1e-6
    num_train_epochs: float = 3.0
    max_steps: int = -1
    effective_batch_size: int = 128
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int | None = None
    precision: str = "auto"
    model_dtype: str = "float32"
    max_length: int | None = None
    image_max_pixels: int | None = 802816
    gradient_checkpointing: bool = True
    attn_implementation: str | None = None
    save_steps: int = 800
    save_total_limit: int | None = None
    logging_steps: int = 10
    eval_fraction: float = 0.0
    eval_steps: int | None = None
    seed: int = 42
    dataloader_num_workers: int = 4

    def check(self) -> None:
        if self.max_length is not None:
            raise UserError(f"max_length={self.max_length} would truncate image tokens (the images and their tokens "
                            "would no longer match); set max_length: null")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise UserError(f"precision must be auto, bf16 or fp32, not {self.precision!r}")
        if self.model_dtype not in ("float32", "bfloat16"):
            raise UserError(f"model_dtype must be float32 or bfloat16, not {self.model_dtype!r}")
        if not 0.0 <= self.eval_fraction < 1.0 or not 0.0 <= self.warmup_fraction < 1.0:
            raise UserError("eval_fraction and warmup_fraction must lie in [0, 1)")
        if self.effective_batch_size < 1 or self.per_device_train_batch_size < 1:
            raise UserError("effective_batch_size and per_device_train_batch_size must be at least 1")


OVERRIDES = ("model", "learning_rate", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
             "effective_batch_size", "num_train_epochs", "save_steps", "eval_fraction", "logging_steps", "seed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path,
                        help="a build-sft / import-sft stage directory, or the dataset folder inside it")
    parser.add_argument("--config", default=DEFAULT_CONFIG,
                        help=f"a config shipped in rrbench_train/parrot/configs ({DEFAULT_CONFIG}) or a YAML file")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="checkpoint folder (default: an sft__... stage directory beside the dataset's stage)")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                        help="continue from the last complete checkpoint in the output directory (default)")
    parser.add_argument("--model", help="base model: a local folder or a hub id (default: the config's)")
    kinds = {f.name: f.type for f in dataclasses.fields(Recipe)}
    for name in OVERRIDES[1:]:
        kind = float if "float" in str(kinds[name]) else int
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, help=f"override {name}")


def main(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.config, {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None})
    dataset_dir = resolve_dataset(Path(args.data))
    dataset = load_checked_dataset(dataset_dir)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    accumulation = recipe.gradient_accumulation_steps or math.ceil(
        recipe.effective_batch_size / (recipe.per_device_train_batch_size * world))
    inputs = {"dataset": str(dataset_dir), "dataset_hash": dataset_hash(dataset_dir)}
    stage = _stage(args.output_dir, dataset_dir, recipe, inputs)
    code = train(recipe, dataset, stage, accumulation, world, resume=args.resume)
    _leave_group()
    return code


def _leave_group() -> None:
    """After a finished run, every process waits for the others (the main one writes the stage record last) and
    leaves the process group. A process that exits with its gloo group still up can abort in the group's teardown
    (SIGABRT, "terminate called without an active exception": seen once in CI, the other rank then waiting 300 s)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------------------ config, inputs


def load_recipe(config: str, overrides: Mapping[str, Any]) -> Recipe:
    path = CONFIGS / config if (CONFIGS / config).is_file() and "/" not in config else Path(config)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read the SFT config {config}: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise UserError(f"the SFT config {path} is not a mapping of keys to values")
    known = {f.name for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UserError(f"unknown key(s) in {path}: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    try:
        recipe = Recipe(**{**raw, **overrides})
    except TypeError as exc:
        raise UserError(f"bad SFT config {path}: {exc}") from None
    recipe.check()
    return recipe


def resolve_dataset(path: Path) -> Path:
    path = path.resolve()
    for candidate in (path / DATASET, path):
        if (candidate / "dataset_info.json").is_file():
            return candidate
    raise UserError(f"no saved dataset at {path} (expected a build-sft / import-sft stage directory or its "
                    f"{DATASET}/ folder)")


def load_checked_dataset(path: Path) -> Any:
    """The dataset, refused unless every row has images and as many image blocks as images."""
    import datasets
    import pyarrow.compute as pc

    dataset = datasets.load_from_disk(str(path))
    missing = [c for c in ("prompt", "completion", "images") if c not in dataset.column_names]
    if missing:
        what = "no images column: a critic must be trained on its images" if "images" in missing else "no columns"
        raise UserError(f"dataset {path} has {what} ({', '.join(missing)} missing; see rrbench-train build-sft)")
    counts = pc.list_value_length(dataset.data.column("images")).to_pylist()
    empty = sum(1 for n in counts if not n)
    if empty:
        raise UserError(f"dataset {path}: {empty} of {len(counts)} rows have no images (a critic must see them)")
    for row_id, prompt, n in zip(dataset["id"] if "id" in dataset.column_names else range(len(counts)),
                                 dataset["prompt"], counts, strict=True):
        blocks = sum(b["type"] == "image" for m in prompt for b in m["content"])
        if blocks != n:
            raise UserError(f"dataset {path}: row {row_id} has {blocks} image block(s) but {n} image(s)")
    return dataset


def dataset_hash(path: Path) -> str:
    """Which dataset version: its datasets state (fingerprint) and data file names and sizes; cheap on 100 GB."""
    digest = hashlib.sha256()
    for file in sorted(path.iterdir()):
        digest.update(file.name.encode() + str(file.stat().st_size).encode())
        if file.suffix == ".json":
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def _stage(output_dir: Path | None, dataset_dir: Path, recipe: Recipe, inputs: dict[str, Any]) -> StageDir:
    """The run's stage directory (``--output-dir`` or a hashed one beside the dataset's stage), refused if it holds
    another run."""
    parent = dataset_dir.parent if dataset_dir.name == DATASET else dataset_dir
    config = dataclasses.asdict(recipe)
    stage = StageDir(parent.parent, "sft", parent.name, config, inputs)
    if output_dir is not None:
        stage.path = output_dir.resolve()  # the user's checkpoint folder holds the same record as a stage dir
    previous = read_json(stage.path / STAGE_JSON)
    if previous and (previous.get("config"), previous.get("inputs")) != (stage.config, stage.inputs):
        changed = sorted(k for k in {**config, **(previous.get("config") or {})}
                         if config.get(k) != (previous.get("config") or {}).get(k))
        what = f"config ({', '.join(changed)})" if changed else "dataset"
        raise UserError(f"{stage.path} holds another training run (its {what} differs); choose another "
                        "--output-dir")
    return stage


# ------------------------------------------------------------------------------------------------ training


def train(recipe: Recipe, dataset: Any, stage: StageDir, accumulation: int, world: int, *, resume: bool) -> int:
    import torch

    bf16 = recipe.precision == "bf16" or (recipe.precision == "auto" and torch.cuda.is_available()
                                          and torch.cuda.is_bf16_supported())
    split = dataset.train_test_split(test_size=recipe.eval_fraction, seed=recipe.seed) if recipe.eval_fraction else None
    train_set, eval_set = (split["train"], split["test"]) if split else (dataset, None)
    args = sft_config(recipe, stage.path, accumulation, bf16, eval_set is not None)  # before the model: ZeRO-3 init
    model, processor = load_student(recipe)
    frozen = freeze_vision(model) if recipe.freeze_vision else {"frozen": 0}
    trainer = _trainer(model, processor, args, train_set, eval_set)
    main_process = trainer.is_world_process_zero()
    last = last_checkpoint(stage.path) if resume else None
    if main_process:
        stage.open()
    metrics: dict[str, Any] = {}
    if eval_set is not None and last is None:
        metrics["eval_loss_before"] = trainer.evaluate()["eval_loss"]
    result = trainer.train(resume_from_checkpoint=last)
    metrics.update(train_loss=result.training_loss, train_runtime_s=result.metrics.get("train_runtime"))
    if eval_set is not None:
        metrics["eval_loss_after"] = trainer.evaluate()["eval_loss"]
    trainer.save_model(str(stage.path))  # model + processor (tokenizer, chat template) + generation config
    if not main_process:
        return 0
    counts = {"train_rows": len(train_set), "eval_rows": len(eval_set or []), "world_size": world,
              "per_device_train_batch_size": recipe.per_device_train_batch_size,
              "gradient_accumulation_steps": accumulation,
              "effective_batch_size": recipe.per_device_train_batch_size * world * accumulation,
              "global_step": trainer.state.global_step, "batches_checked": trainer.batches_checked, **frozen}
    session = {"id": f"session-{(read_json(stage.path / STAGE_JSON) or {}).get('sessions', 1)}",
               "resumed_from": Path(last).name if last else None, "global_step": trainer.state.global_step,
               "metrics": metrics}
    stage.append(session)
    missing = [" or ".join(alt) for alt in CHECKPOINT_FILES if not any((stage.path / f).is_file() for f in alt)]
    stage.finish("done" if not missing else "incomplete", counts, metrics=metrics, versions=_versions(),
                 precision="bf16" if bf16 else "fp32", checkpoint_missing=missing)
    print(f"sft: {trainer.state.global_step} steps, train loss {result.training_loss:.4f}"
          + (f", held-out loss {metrics['eval_loss_before']:.4f} -> {metrics['eval_loss_after']:.4f}"
             if "eval_loss_before" in metrics else "") + f" -> {stage.path}")
    return 0


def sft_config(recipe: Recipe, output_dir: Path, accumulation: int, bf16: bool, has_eval: bool) -> Any:
    import torch
    from trl import SFTConfig

    cuda = torch.cuda.is_available()
    eval_strategy = "steps" if has_eval and recipe.eval_steps else "no"
    return SFTConfig(
        output_dir=str(output_dir), max_length=None, learning_rate=recipe.learning_rate,
        lr_scheduler_type=recipe.lr_scheduler_type, warmup_steps=recipe.warmup_fraction,
        weight_decay=recipe.weight_decay, num_train_epochs=recipe.num_train_epochs, max_steps=recipe.max_steps,
        per_device_train_batch_size=recipe.per_device_train_batch_size,
        per_device_eval_batch_size=recipe.per_device_train_batch_size, gradient_accumulation_steps=accumulation,
        bf16=bf16, fp16=False, gradient_checkpointing=recipe.gradient_checkpointing,
        save_strategy="steps", save_steps=recipe.save_steps, save_total_limit=recipe.save_total_limit,
        logging_steps=recipe.logging_steps, eval_strategy=eval_strategy, eval_steps=recipe.eval_steps,
        seed=recipe.seed, data_seed=recipe.seed, dataloader_num_workers=recipe.dataloader_num_workers,
        report_to="none", completion_only_loss=True, save_only_model=False,
        # without a GPU, processes started by accelerate/torchrun form a gloo group only when told to use the CPU
        use_cpu=not cuda, ddp_backend="gloo" if not cuda and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
    )


def load_student(recipe: Recipe) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(recipe.model)
        model = AutoModelForImageTextToText.from_pretrained(
            recipe.model, dtype=getattr(torch, recipe.model_dtype), attn_implementation=recipe.attn_implementation)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load the student {recipe.model}: {str(exc).splitlines()[0]}") from None
    if recipe.image_max_pixels is not None:  # saved with the processor, so rrbench serves what was trained
        size = dict(processor.image_processor.size)
        processor.image_processor.size = {**{k: v for k, v in size.items() if v is not None},
                                          "longest_edge": recipe.image_max_pixels}
    return model, processor


def freeze_vision(model: Any) -> dict[str, int]:
    """Freeze the vision tower and its projector/merger (Qwen3-VL: ``visual``, incl. the deepstack mergers)."""
    frozen: list[str] = []
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in VISION_MODULES:
            for pname, param in module.named_parameters(prefix=name):
                param.requires_grad_(False)
                frozen.append(pname)
    if not frozen:
        raise UserError(f"freeze_vision: no vision tower ({', '.join(VISION_MODULES)}) found in the student")
    deepstack = getattr(getattr(model.config, "vision_config", None), "deepstack_visual_indexes", None)
    assert any("merger" in n for n in frozen), "the vision merger (projector) must be frozen"
    assert not deepstack or any("deepstack" in n for n in frozen), "the deepstack mergers must be frozen"
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"frozen_parameters": sum(p.numel() for n, p in model.named_parameters() if n in set(frozen)),
            "trainable_parameters": trainable}


def check_batch(batch: Mapping[str, Any], image_token_id: int | None) -> None:
    """A training batch without image tensors (or a row without image tokens) fails loudly."""
    pixels = batch.get("pixel_values")
    if pixels is None or pixels.numel() == 0:
        raise UserError("a training batch has no pixel_values: the images never reached the model (check the "
                        "dataset's image blocks)")
    if image_token_id is not None and not (batch["input_ids"] == image_token_id).any(dim=1).all():
        raise UserError("a training row has no image tokens although its batch has images")


def _trainer(model: Any, processor: Any, args: Any, train_set: Any, eval_set: Any) -> Any:
    from trl import SFTTrainer

    token = getattr(processor, "image_token_id", None)
    token = token if isinstance(token, int) else None

    class CheckedSFTTrainer(SFTTrainer):
        # checked where the batch meets the model (in the training process, whatever the data loader workers)
        batches_checked = 0

        def training_step(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            check_batch(inputs, token)
            self.batches_checked += 1
            return super().training_step(model, inputs, *args, **kwargs)

    return CheckedSFTTrainer(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                             processing_class=processor)


def last_checkpoint(output_dir: Path) -> str | None:
    """The newest ``checkpoint-N`` that was saved to the end (``trainer_state.json`` is written last)."""
    if not output_dir.is_dir():
        return None
    done = [p for p in output_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
            and (p / "trainer_state.json").is_file()]
    return str(max(done, key=lambda p: int(p.name.split("-")[-1]))) if done else None


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("torch", "transformers", "trl", "accelerate", "datasets", "deepspeed"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
