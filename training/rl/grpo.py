"""Flow-GRPO (arXiv 2505.05470): policy-gradient RL on a flow-matching generator through SDE rollouts.

The flow ODE ``dx/dσ = v(x, σ)`` (data at σ = 0, noise at σ = 1, ``x_σ = (1 − σ)·x₀ + σ·ε``, ``v = ε − x₀``) is
deterministic, so it has no per-step likelihood. Flow-GRPO samples instead from a reverse-time SDE with the same
marginals ``p_σ``, whose Euler–Maruyama transitions are Gaussians with a known density.

Derivation (written here so the code can be checked against it). With ``x̂₀ = x − σ·v`` and ``ε̂ = x + (1 − σ)·v``
the score is ``∇log p_σ(x) = −ε̂ / σ``. For any diffusion ``g``, the forward SDE ``dx = [v + ½g²∇log p]dσ + g dw``
has the ODE's marginals; its time reversal is ``dx = [v − ½g²∇log p]dσ + g dw̄``, run from σ = 1 down to 0. One
Euler–Maruyama step of size ``h = σ − σ' > 0`` is the Gaussian

    x' ~ N(μ, s²),  μ = x − h·[v + g²/(2σ)·(x + (1 − σ)·v)],  s = g·√h,  g = a·√(σ / (1 − σ)),

with ``a`` the noise level (0.7 in the paper). ``a = 0`` is exactly the Euler ODE step ``x − h·v``. ``g`` is
infinite at σ = 1, so it is taken at ``min(σ, σ_cap)``, ``σ_cap`` the largest grid value below 1.

Everything a ratio depends on is float32 whatever the model's dtype: the velocity is cast before the mean, latents
are stored in float32, and a log-probability is the Gaussian log-density averaged over the latent's elements (bf16
log-densities are what gives NaNs with Kontext / Qwen-Image).

The loss of one (sample, step) is PPO's clipped surrogate on the per-step ratio ``exp(log π_θ − log π_old)`` with
the sample's group-normalised advantage, plus ``β·KL(π_θ ‖ π_ref)`` to the base model (LoRA disabled). Both
transitions share ``s``, so the KL is ``‖μ_θ − μ_ref‖² / (2s²)``, averaged over elements like the log-probs.
Rollouts are sampled with the trained adapter itself (the ``old`` adapter is NFT's), so the stored log-probs are
π_old and, with the same parameters and the same stored trajectory, the ratio is exactly 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from rrbench import UserError
from rrbench_train.rl.algorithm import TRAINED, Adapter, Conditions, Rollout, derive_seed

if TYPE_CHECKING:
    from rrbench_train.rl.config import GRPOConfig, RLConfig

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``velocity(x, σ)`` -> v: float32 latents ``[B, ...]`` and σ ``[B]``; casting to the model's dtype is its own
business, so sampling and training cast the same stored float32 latent the same way."""

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


# ------------------------------------------------------------------------------------------------- the SDE


def noise_cap(sigmas: torch.Tensor) -> float:
    """The largest grid σ below 1, where ``g = a·√(σ/(1−σ))`` is evaluated for a step that starts at σ = 1."""
    below = sigmas[sigmas < 1]
    return float(below.max()) if below.numel() else 0.5


def sde_step(x: torch.Tensor, v: torch.Tensor, sigma: float, sigma_next: float, noise_level: float,
             sigma_cap: float) -> tuple[torch.Tensor, float]:
    """Mean (float32) and standard deviation of the Euler–Maruyama transition from σ to σ_next < σ."""
    if not sigma_next < sigma:
        raise ValueError(f"an SDE step runs towards the data: σ_next {sigma_next} must be below σ {sigma}")
    x, v = x.float(), v.float()
    h = sigma - sigma_next
    s = min(sigma, sigma_cap)
    g2 = noise_level**2 * s / (1 - s)
    mean = x - h * (v + g2 / (2 * sigma) * (x + (1 - sigma) * v))
    return mean, math.sqrt(g2 * h)


def gaussian_logprob(x: torch.Tensor, mean: torch.Tensor, std: float | torch.Tensor) -> torch.Tensor:
    """log N(x; mean, std²) in float32, averaged over every dimension but the first: ``[B]``."""
    std = torch.as_tensor(std, dtype=torch.float32, device=mean.device)
    if not bool((std > 0).all()):
        raise ValueError("a Gaussian log-probability needs std > 0 (noise_level 0 is the deterministic ODE)")
    z = (x.float() - mean.float()) / std
    return (-0.5 * z**2 - torch.log(std) - LOG_SQRT_2PI).flatten(1).mean(1)


def gaussian_kl(mean_p: torch.Tensor, std_p: float | torch.Tensor, mean_q: torch.Tensor,
                std_q: float | torch.Tensor) -> torch.Tensor:
    """KL(N(mean_p, std_p²) ‖ N(mean_q, std_q²)) in closed form, per element, averaged over all but the first dim."""
    sp = torch.as_tensor(std_p, dtype=torch.float32, device=mean_p.device)
    sq = torch.as_tensor(std_q, dtype=torch.float32, device=mean_p.device)
    diff = mean_p.float() - mean_q.float()
    return (torch.log(sq / sp) + (sp**2 + diff**2) / (2 * sq**2) - 0.5).flatten(1).mean(1)


def sde_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per sample for its SDE noise (a stream apart from its initial noise), so batching and
    sharding never change a trajectory."""
    return [torch.Generator().manual_seed(derive_seed(seed, "grpo-sde")) for seed in seeds]


@torch.no_grad()
def sde_sample(velocity: Velocity, noise: torch.Tensor, sigmas: Sequence[float] | torch.Tensor, noise_level: float,
               generator: torch.Generator | Sequence[torch.Generator] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate the reverse SDE from ``noise`` down the decreasing grid ``sigmas``. Returns every latent ``[B, T + 1,
    ...]`` (float32, ``[:, 0]`` the noise) and each step's log-probability ``[B, T]`` (float32). ``generator``: one
    for the batch, or one per sample (drawn on the CPU). ``noise_level == 0`` is the Euler ODE, and its log-probs
    are NaN (a point mass has no density)."""
    sigmas = torch.as_tensor(sigmas, dtype=torch.float32).cpu()
    cap = noise_cap(sigmas)
    x = noise.float()
    latents, log_probs = [x], []
    for sigma, sigma_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist(), strict=True):
        mean, std = sde_step(x, velocity(x, torch.full((len(x),), sigma, device=x.device)), sigma, sigma_next,
                             noise_level, cap)
        if std > 0:
            x = mean + std * _standard_normal(mean, generator)
            log_probs.append(gaussian_logprob(x, mean, std))
        else:
            x = mean
            log_probs.append(torch.full((len(x),), math.nan, device=x.device))
        latents.append(x)
    return torch.stack(latents, 1), torch.stack(log_probs, 1)


def _standard_normal(like: torch.Tensor, generator: torch.Generator | Sequence[torch.Generator] | None
                     ) -> torch.Tensor:
    if generator is None or isinstance(generator, torch.Generator):
        eps = torch.randn(like.shape, generator=generator, dtype=torch.float32)
    else:
        eps = torch.stack([torch.randn(like.shape[1:], generator=g, dtype=torch.float32) for g in generator])
    return eps.to(like.device)


# ------------------------------------------------------------------------------------------------- the loss


def clipped_surrogate(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                      clip: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's per-sample loss ``max(−A·r, −A·clip(r, 1 − ε, 1 + ε))``, r = exp(log π − log π_old). Also returns r and
    where the clipped branch won (there the sample carries no gradient)."""
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip, 1 + clip)
    return torch.maximum(unclipped, clipped), ratio, clipped > unclipped


def transition_loss(policy: Velocity, reference: Velocity | None, x: torch.Tensor, x_next: torch.Tensor,
                    sigma: float, sigma_next: float, sigma_cap: float, old_log_prob: torch.Tensor,
                    advantages: torch.Tensor, cfg: GRPOConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-sample GRPO loss ``[B]`` of one stored transition x → x_next. A NaN advantage (a failed reward, or a group
    without two valid rewards) gives exactly 0 and no gradient. Statistics are per sample, detached."""
    valid = torch.isfinite(advantages)
    adv = torch.where(valid, advantages, 0.0).clamp(-cfg.adv_clip, cfg.adv_clip)
    sig = torch.full((len(x),), sigma, device=x.device)
    mean, std = sde_step(x, policy(x, sig), sigma, sigma_next, cfg.noise_level, sigma_cap)
    log_prob = gaussian_logprob(x_next, mean, std)
    surrogate, ratio, clipped = clipped_surrogate(log_prob, old_log_prob, adv, cfg.clip_range)
    kl = torch.zeros_like(surrogate)
    if reference is not None and cfg.kl > 0:
        with torch.no_grad():
            mean_ref, _ = sde_step(x, reference(x, sig), sigma, sigma_next, cfg.noise_level, sigma_cap)
        kl = gaussian_kl(mean, std, mean_ref, std)
    loss = torch.where(valid, surrogate + cfg.kl * kl, 0.0)
    return loss, {"ratio": ratio.detach(), "clipped": clipped.float(), "kl": kl.detach(),
                  "log_prob": log_prob.detach(), "valid": valid}


# ------------------------------------------------------------------------------------------- the algorithm


class GRPO:
    """Flow-GRPO as an ``Algorithm``: ``sampling.steps`` SDE steps per rollout with the trained adapter, and one
    backward unit per trained step (``grpo.timestep_fraction`` of them, the same seeded choice on every process)."""

    name = "grpo"

    def __init__(self, config: RLConfig) -> None:
        self.cfg = config.grpo
        self.steps = config.sampling.steps
        self.seed = config.seed
        if not self.cfg.noise_level > 0:
            raise UserError(f"config grpo.noise_level must be above 0, got {self.cfg.noise_level} (an ODE rollout "
                            "has no likelihood)")
        if not 0 < self.cfg.timestep_fraction <= 1:
            raise UserError(f"config grpo.timestep_fraction must be in (0, 1], got {self.cfg.timestep_fraction}")
        if not self.cfg.clip_range > 0 or self.cfg.kl < 0:
            raise UserError(f"config grpo.clip_range must be above 0 and grpo.kl at least 0, got "
                            f"{self.cfg.clip_range} and {self.cfg.kl}")
        self.units = max(1, round(self.cfg.timestep_fraction * self.steps))
        self._empty: Conditions | None = None  # the empty prompt's conditions, for CFG

    # -- sampling

    def rollout(self, adapter: Adapter, cond: Conditions, seeds: Sequence[int]) -> Rollout:
        sigmas = adapter.sigmas(self.steps).float().cpu()
        noise = adapter.noise(seeds).to(adapter.device)
        latents, log_probs = sde_sample(self.velocity(adapter, cond, TRAINED), noise, sigmas, self.cfg.noise_level,
                                        sde_generators(seeds))
        x0 = latents[:, -1]
        return Rollout(x0=x0, cond=cond, seeds=tuple(seeds), images=adapter.decode(x0), latents=latents,
                       log_probs=log_probs, sigmas=sigmas)

    def velocity(self, adapter: Adapter, cond: Conditions, lora: str | None) -> Velocity:
        """v with the named LoRA and the configured CFG, the same in sampling, training and the reference."""
        def v(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            out = adapter.velocity(x, sigma, cond, lora)
            if self.cfg.cfg == 1.0:
                return out
            v_empty = adapter.velocity(x, sigma, self._unconditional(adapter, cond), lora)
            return v_empty + self.cfg.cfg * (out - v_empty)

        return v

    def _unconditional(self, adapter: Adapter, cond: Conditions) -> Conditions:
        """The empty prompt's text conditions for each sample; other conditions (an edit's source) are the sample's."""
        if self._empty is None:
            with torch.no_grad():
                self._empty = adapter.encode([""], None).to(adapter.device)
        batch = len(next(iter(cond.batched.values())))
        empty = self._empty.select([0] * batch)
        return Conditions({k: empty.batched.get(k, value) for k, value in cond.batched.items()}, cond.shared)

    # -- training

    def timestep(self, step: int, unit: int) -> int:
        """Which SDE step backward unit ``unit`` of optimizer step ``step`` trains on."""
        if self.units == self.steps:
            return unit
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "grpo", step))
        order = torch.randperm(self.steps, generator=gen)
        return int(order[unit])

    def prepare(self, adapter: Adapter, rollout: Rollout, step: int, unit: int) -> dict[str, torch.Tensor]:
        """The reference's velocity at the unit's stored x_k (no gradients), when the KL term needs it."""
        if rollout.latents is None or rollout.sigmas is None:
            raise ValueError("a GRPO loss needs the rollout's trajectory (latents, log_probs, sigmas)")
        if not self.cfg.kl > 0:
            return {}
        k = self.timestep(step, unit)
        x = rollout.latents[:, k]
        with torch.no_grad():  # at the very σ transition_loss passes
            v_ref = self.velocity(adapter, rollout.cond, None)(x, torch.full((len(x),), float(rollout.sigmas[k]),
                                                                             device=x.device))
        return {"v_ref": v_ref}

    def loss(self, adapter: Adapter, rollout: Rollout, advantages: torch.Tensor, step: int, unit: int,
             prepared: Mapping[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        if rollout.latents is None or rollout.log_probs is None or rollout.sigmas is None:
            raise ValueError("a GRPO loss needs the rollout's trajectory (latents, log_probs, sigmas)")
        k = self.timestep(step, unit)
        sigmas = rollout.sigmas
        ready = prepared if prepared is not None else self.prepare(adapter, rollout, step, unit)
        reference = (lambda x, sig: ready["v_ref"]) if "v_ref" in ready else None
        loss, stats = transition_loss(self.velocity(adapter, rollout.cond, TRAINED), reference,
                                      rollout.latents[:, k], rollout.latents[:, k + 1], float(sigmas[k]),
                                      float(sigmas[k + 1]), noise_cap(sigmas), rollout.log_probs[:, k],
                                      advantages.to(rollout.latents.device), self.cfg)
        return loss, summarize(stats)

    def after_optimizer_step(self, adapter: Adapter, step: int) -> dict[str, float]:
        return {}  # π_old is the rollout's stored log-probs: no old adapter to update

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        return None


def summarize(stats: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Means over the valid samples: ratio, |ratio − 1|, the clipped share, KL, log-prob (NaN-free when none)."""
    valid = stats["valid"]
    if not bool(valid.any()):
        return {}
    ratio = stats["ratio"][valid]
    return {"ratio": float(ratio.mean()), "ratio_dev": float((ratio - 1).abs().mean()),
            "clip_frac": float(stats["clipped"][valid].mean()), "kl": float(stats["kl"][valid].mean()),
            "log_prob": float(stats["log_prob"][valid].mean())}
