"""Resumable checkpoints: ``OUT/checkpoints/step-NNNNNN/``.

- ``lora/``: a PEFT adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``) with the EMA of the
  trained LoRA (the trained weights themselves when EMA is off): what ``rrbench generate --generator G -G path=PIPE
  -G lora=CKPT/lora`` loads.
- ``state.pt``: everything else a resumed run needs to continue the same trajectory: the trained and old LoRA
  weights, the optimizer, the EMA, the sampler (pass, position, banned keys), the step, counters, the algorithm's
  state and the RNG states.

A checkpoint is written into a temporary folder and renamed, so a kill mid-write leaves the previous one as the
latest. Only the main process writes; every process reads.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rrbench import UserError

if TYPE_CHECKING:
    import torch

LORA, STATE = "lora", "state.pt"


def checkpoint_dir(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"step-{step:06d}"


def latest(out: Path) -> Path | None:
    folders = sorted(p for p in (out / "checkpoints").glob("step-*") if (p / STATE).is_file())
    return folders[-1] if folders else None


def save_lora(transformer: Any, lora_config: Any, weights: dict[str, torch.Tensor] | None, folder: Path) -> None:
    """The trained adapter as a PEFT folder; ``weights`` (by parameter name) replace its values (the EMA)."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    from rrbench_train.rl.algorithm import TRAINED

    state = get_peft_model_state_dict(transformer, adapter_name=TRAINED)
    if weights is not None:
        by_key = {name.replace(f".{TRAINED}.", "."): tensor for name, tensor in weights.items()}
        missing = set(state) - set(by_key)
        if missing:
            raise RuntimeError(f"EMA weights miss {sorted(missing)[:3]}")
        state = {key: by_key[key] for key in state}
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().float().cpu().contiguous() for k, v in state.items()},
              str(folder / "adapter_model.safetensors"))
    config = lora_config.to_dict()
    config["target_modules"] = sorted(config["target_modules"]) if config.get("target_modules") else None
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value)
    return getattr(value, "value", str(value))  # enums (peft's task type)


def save(out: Path, step: int, state: dict[str, Any], lora: tuple[Any, Any, dict[str, torch.Tensor] | None],
         keep: int = 2) -> Path:
    """Write checkpoint ``step`` atomically; keep the ``keep`` newest."""
    import torch

    final = checkpoint_dir(out, step)
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_lora(*lora, tmp / LORA)
    rng = {"python": random.getstate(), "torch": torch.get_rng_state()}
    torch.save({**state, "step": step, "rng": rng}, tmp / STATE)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in sorted(p for p in (out / "checkpoints").glob("step-*") if (p / STATE).is_file())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load(folder: Path) -> dict[str, Any]:
    import torch

    try:  # a truncated or foreign file fails in many ways (pickle, zip, torch): each is the same fix
        state: dict[str, Any] = torch.load(folder / STATE, map_location="cpu", weights_only=False)
        rng = state["rng"]
        random.setstate(rng["python"])
        torch.set_rng_state(rng["torch"])
    except Exception as exc:
        why = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
        raise UserError(f"checkpoint {folder} cannot be read ({why}); remove that folder to resume from the one "
                        "before it, or choose a new output_dir") from None
    return state


# What a checkpoint's tensors and optimizer state are shaped by: a config that differs here cannot resume it.
STRUCTURAL = (("algorithm",), ("generator", "name"), ("generator", "resolution"), ("lora", "rank"), ("lora", "alpha"),
              ("lora", "targets"))


def check_compatible(folder: Path, saved: dict[str, Any] | None, now: dict[str, Any]) -> None:
    """One UserError line naming every structural setting where the config differs from the checkpoint's."""
    if not saved:
        return

    def at(config: dict[str, Any], path: tuple[str, ...]) -> Any:
        for key in path:
            config = config.get(key) if isinstance(config, dict) else None  # type: ignore[assignment]
        return config

    changed = [f"{'.'.join(p)} {at(saved, p)!r} (checkpoint) vs {at(now, p)!r} (config)" for p in STRUCTURAL
               if at(saved, p) != at(now, p)]
    if changed:
        raise UserError(f"{folder.parent.parent} holds a run with other settings: {'; '.join(changed)}; resume it with "
                        "the checkpoint's settings, or choose a new output_dir")
