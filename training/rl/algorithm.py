"""The two interfaces the RL loop is written against: a generator ``Adapter`` (training/rl/adapters/) and an
``Algorithm`` (DiffusionNFT in nft.py, Flow-GRPO in grpo.py). The trainer (trainer.py) owns everything else.

Shapes and conventions, shared by every adapter and algorithm:

- B = samples in a batch, N = image tokens, C = channels per token. Latents are in the denoiser's own layout
  (Flux and Qwen-Image: packed 2×2 patches, ``[B, N, C]``); an algorithm never looks inside them.
- Flow matching with σ ∈ [0, 1]: x_σ = (1 − σ)·x₀ + σ·ε, and the denoiser predicts the velocity v = ε − x₀, so
  x̂₀ = x_σ − σ·v. σ = 1 is pure noise. A sampling schedule is ``adapter.sigmas(steps)``: steps + 1 values, from
  near 1 down to exactly 0 (the generator's own shifted schedule).
- LoRA adapters on the one denoiser: ``"default"`` is trained, ``"old"`` samples rollouts (NFT), and ``None`` is the
  reference (every adapter disabled: the base model). ``adapter.velocity(..., lora="default")`` is the only forward
  that may carry gradients; the others are meant to run under ``torch.no_grad()``.
- Seeds: one integer per sample. All randomness of a sample (its initial noise, NFT's fresh training noise, GRPO's
  SDE noise) comes from CPU ``torch.Generator``s seeded from it, so how samples are batched or sharded over
  processes never changes them, and a resumed run redraws the same numbers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from rrbench_train.rl.config import RLConfig

TRAINED, OLD = "default", "old"  # LoRA adapter names (peft's default name is the trained one)


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from several parts (a sample's seed, the step, the unit, ...): stable across processes and
    Python runs, unlike ``hash()``."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass(frozen=True)
class Conditions:
    """Encoded conditions of B samples. ``batched`` tensors have B first (prompt embeddings ``[B, L, D]``, pooled
    ``[B, D]``, an edit's source latents ``[B, M, C]``); ``shared`` ones are the same for every sample (Flux's
    ``txt_ids``/``img_ids`` position ids). Adapter-specific keys: only the adapter that made them reads them."""

    batched: Mapping[str, torch.Tensor]
    shared: Mapping[str, torch.Tensor] = field(default_factory=dict)

    def select(self, index: Sequence[int] | torch.Tensor) -> Conditions:
        return replace(self, batched={k: v[index] for k, v in self.batched.items()})

    def to(self, device: Any) -> Conditions:
        return Conditions({k: v.to(device) for k, v in self.batched.items()},
                          {k: v.to(device) for k, v in self.shared.items()})


class Adapter(Protocol):
    """What an algorithm needs from a generator: one per pipeline family, built by ``adapters.build_adapter``."""

    name: str  # the rrbench generator name (flux-dev, flux-kontext, ...)
    device: torch.device
    dtype: torch.dtype  # the denoiser's compute dtype (bf16 on GPU); latents handed around are float32
    transformer: Any  # the denoiser with both LoRA adapters (checkpoints read and write its parameters)
    train_model: Any  # what the ``default`` forward calls: the transformer, or accelerate's DDP wrapper of it

    def encode(self, prompts: Sequence[str], sources: Sequence[Sequence[Image.Image]] | None) -> Conditions:
        """Text (and, for editing, source-image latents) for B samples; no gradients."""
        ...

    def noise(self, seeds: Sequence[int]) -> torch.Tensor:
        """Initial noise ``[B, N, C]`` float32, one CPU generator per seed."""
        ...

    def sigmas(self, steps: int) -> torch.Tensor:
        """The sampling schedule: ``steps + 1`` float32 values from ~1 down to 0."""
        ...

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditions, lora: str | None = TRAINED
                 ) -> torch.Tensor:
        """v(x_σ, σ | cond) ``[B, N, C]`` float32 with the named LoRA adapter (None: the reference, adapters
        disabled). ``sigma`` is ``[B]``. Gradients flow only for ``lora="default"`` (callers wrap the others in
        ``torch.no_grad()``); a ``default`` forward always runs with exactly ``default`` trainable."""
        ...

    def decode(self, x0: torch.Tensor) -> list[Image.Image]:
        """Clean latents ``[B, N, C]`` to RGB images."""
        ...

    def trainable(self) -> Iterator[tuple[str, torch.nn.Parameter]]:
        """The ``default`` adapter's parameters (the optimizer's, and the only ones with gradients)."""
        ...

    def lora_pairs(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(default, old) parameter pairs, for the old-policy update."""
        ...


@dataclass(frozen=True)
class Rollout:
    """What sampling keeps for training, B samples.

    NFT keeps only ``x0`` and the conditions. GRPO keeps the trajectory: ``latents`` ``[B, T + 1, N, C]`` (x at
    every σ of ``sigmas``, ``latents[:, 0]`` the initial noise, ``latents[:, T]`` = x0), ``log_probs`` ``[B, T]``
    float32 (log p of each SDE transition under the sampling policy, averaged over latent dimensions) and
    ``sigmas`` ``[T + 1]``. ``images`` are the decoded x0 (for the reward); the trainer drops them once submitted.
    """

    x0: torch.Tensor
    cond: Conditions
    seeds: tuple[int, ...]
    images: list[Image.Image] = field(default_factory=list)
    latents: torch.Tensor | None = None
    log_probs: torch.Tensor | None = None
    sigmas: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.seeds)

    def select(self, index: Sequence[int]) -> Rollout:
        import torch

        idx = torch.as_tensor(list(index), dtype=torch.long)
        pick = (lambda t: None if t is None else t[idx.to(t.device)])  # noqa: E731 - three optional tensors
        return Rollout(x0=self.x0[idx.to(self.x0.device)], cond=self.cond.select(idx.to(self.x0.device)),
                       seeds=tuple(self.seeds[i] for i in index), images=[self.images[i] for i in index]
                       if self.images else [], latents=pick(self.latents), log_probs=pick(self.log_probs),
                       sigmas=self.sigmas)

    @staticmethod
    def cat(parts: Sequence[Rollout]) -> Rollout:
        """Several sampling batches as one (the trainer samples in micro-batches)."""
        import torch

        def cat(ts: list[torch.Tensor | None]) -> torch.Tensor | None:
            return None if any(t is None for t in ts) else torch.cat([t for t in ts if t is not None])

        first = parts[0]
        cond = Conditions({k: torch.cat([p.cond.batched[k] for p in parts]) for k in first.cond.batched},
                          first.cond.shared)
        return Rollout(x0=torch.cat([p.x0 for p in parts]), cond=cond,
                       seeds=tuple(s for p in parts for s in p.seeds), images=[i for p in parts for i in p.images],
                       latents=cat([p.latents for p in parts]), log_probs=cat([p.log_probs for p in parts]),
                       sigmas=first.sigmas)


class Algorithm(Protocol):
    """One RL algorithm. The trainer, for each optimizer step:

    1. ``rollout`` every local sampling batch (no gradients; the trainer wraps it in ``torch.no_grad()``),
    2. gathers rewards and computes advantages ``[B]`` float32 (NaN = this sample's reward failed, or its group
       has fewer than two valid rewards: the sample must contribute exactly nothing),
    3. for every training micro-batch and every ``unit in range(units)``: ``prepare(...)`` while the last rewards
       are judged, then, with the advantages, ``loss(..., prepared)`` and backward. The trainer
       normalises: the optimizer sees Σ per-sample losses / (valid samples in the global batch × units), so the
       result does not depend on micro-batching or the number of processes,
    4. clips gradients, steps the optimizer, calls ``after_optimizer_step``.
    """

    name: str
    units: int  # backward passes per micro-batch (NFT: timesteps drawn per sample; GRPO: trained timesteps)

    def rollout(self, adapter: Adapter, cond: Conditions, seeds: Sequence[int]) -> Rollout:
        """Sample B images for B conditions with the sampling policy."""
        ...

    def prepare(self, adapter: Adapter, rollout: Rollout, step: int, unit: int) -> dict[str, torch.Tensor]:
        """What ``loss`` needs for this micro-batch and unit that depends neither on the advantages nor on the
        trained adapter (NFT: the old policy's and the reference's velocities; GRPO: the reference's), computed
        without gradients. The trainer calls it for every training micro-batch while the epoch's last rewards are
        still being judged, and hands the result back to ``loss`` as ``prepared``."""
        ...

    def loss(self, adapter: Adapter, rollout: Rollout, advantages: torch.Tensor, step: int, unit: int,
             prepared: Mapping[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Per-sample losses ``[B]`` (0 where the advantage is NaN, and no NaN gradient from it) for backward unit
        ``unit`` of optimizer step ``step`` (0-based: optimizer steps done before this one), and statistics to log
        (means over the micro-batch's valid samples; the trainer averages them over units and micro-batches).
        ``prepared``: ``prepare``'s result for the same arguments (None: computed here, the same numbers)."""
        ...

    def after_optimizer_step(self, adapter: Adapter, step: int) -> dict[str, float]:
        """After optimizer step ``step`` (1-based: optimizer steps done including this one), e.g. NFT's old-policy
        update. Returns statistics to log."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must keep beyond the adapters (the LoRA weights are saved by the trainer)."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def build_algorithm(config: RLConfig) -> Algorithm:
    """The algorithm a config names; each module is imported only when chosen. Each class is built as
    ``Cls(config)`` and reads its own block (``config.nft``, ``config.grpo``) plus the shared sampling settings."""
    if config.algorithm == "nft":
        from rrbench_train.rl.nft import NFT

        return NFT(config)
    from rrbench_train.rl.grpo import GRPO

    return GRPO(config)

