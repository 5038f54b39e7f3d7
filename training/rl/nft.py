"""DiffusionNFT (arXiv 2509.16117): pure functions for its math, and the ``NFT`` algorithm over an Adapter.

Rollouts come from the ``old`` LoRA with a deterministic ODE sampler and keep only x₀ and the conditions. Training
draws fresh noise and a σ of the sampling schedule per sample, builds the implicit positive and negative policies
v⁺ = (1 − β)·v_old + β·v_θ and v⁻ = (1 + β)·v_old − β·v_θ, and regresses their x₀ predictions onto the sample's x₀
weighted by the optimality r ∈ [0, 1] of its advantage (r for v⁺, 1 − r for v⁻), each term divided by its own
detached mean absolute error (the paper's adaptive weighting), plus λ·‖v_θ − v_ref‖² to the base model.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rrbench_train.rl.algorithm import OLD, TRAINED, Adapter, Conditions, Rollout, derive_seed

if TYPE_CHECKING:
    import torch

    from rrbench_train.rl.config import RLConfig

STD_EPS = 1e-4  # added to the std, as the reference does
WEIGHT_FLOOR = 1e-5  # the adaptive weight's lower bound


# ------------------------------------------------------------------------------------------------ advantages


def group_advantages(rewards: torch.Tensor, groups: torch.Tensor, std: str = "global", clip: float = 5.0
                     ) -> torch.Tensor:
    """A = (R − mean of its group) / (std + 1e-4), clipped to ±clip. ``rewards`` ``[B]`` has NaN where the reward
    failed; ``groups`` ``[B]`` integer group ids. NaN rewards never enter a mean or std; a failed sample, and every
    sample of a group with fewer than two valid rewards (nothing to compare with), gets NaN (no training signal).
    ``std``: "global" = population std over all valid rewards of the batch (the reference), "group" = per group."""
    import torch

    rewards = rewards.double()
    valid = ~torch.isnan(rewards)
    out = torch.full_like(rewards, float("nan"))
    if std == "global":
        pooled = rewards[valid]
        global_std = pooled.std(unbiased=False) if pooled.numel() > 1 else torch.tensor(0.0, dtype=rewards.dtype)
    for g in torch.unique(groups):
        member = (groups == g) & valid
        if int(member.sum()) < 2:
            continue
        values = rewards[member]
        scale = global_std if std == "global" else values.std(unbiased=False)
        out[member] = (values - values.mean()) / (scale + STD_EPS)
    return out.clamp(-clip, clip).float()


def optimality(advantages: torch.Tensor, clip: float) -> torch.Tensor:
    """r = clamp(½ + ½·A/clip, 0, 1): the probability-like weight of the positive policy. NaN advantages give 0.5
    here; callers mask those samples out of the loss."""
    import torch

    return (0.5 + 0.5 * torch.nan_to_num(advantages, nan=0.0) / clip).clamp(0.0, 1.0)


def banned_groups(rewards: torch.Tensor, keys: Sequence[Hashable], std_below: float, mean_above: float
                  ) -> set[Hashable]:
    """Group keys whose valid rewards have population std < ``std_below`` and mean > ``mean_above`` (solved
    prompts that only add noise); failed (NaN) rewards are ignored, and a group with fewer than two valid ones is
    never banned."""
    import torch

    out: set[Hashable] = set()
    for key in dict.fromkeys(keys):
        index = torch.tensor([i for i, k in enumerate(keys) if k == key])
        values = rewards[index].double()
        values = values[~torch.isnan(values)]
        if values.numel() >= 2 and float(values.std(unbiased=False)) < std_below and float(values.mean()) > mean_above:
            out.add(key)
    return out


# ------------------------------------------------------------------------------------------------ loss


def nft_loss(x0: torch.Tensor, x_t: torch.Tensor, sigma: torch.Tensor, v_theta: torch.Tensor, v_old: torch.Tensor,
             r: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample NFT loss ``[B]`` and its positive and negative terms. Shapes: x0, x_t, v ``[B, N, C]``, sigma and
    r ``[B]``. v_old must be detached (no gradient reaches the old adapter)."""
    s = sigma.view(-1, *([1] * (x0.dim() - 1)))
    v_pos = (1.0 - beta) * v_old + beta * v_theta
    v_neg = (1.0 + beta) * v_old - beta * v_theta
    err_pos = x_t - s * v_pos - x0
    err_neg = x_t - s * v_neg - x0
    dims = tuple(range(1, x0.dim()))
    w_pos = err_pos.detach().abs().mean(dims).clamp_min(WEIGHT_FLOOR)
    w_neg = err_neg.detach().abs().mean(dims).clamp_min(WEIGHT_FLOOR)
    pos = err_pos.pow(2).mean(dims) / w_pos
    neg = err_neg.pow(2).mean(dims) / w_neg
    return r * pos + (1.0 - r) * neg, pos, neg


def velocity_kl(v_theta: torch.Tensor, v_ref: torch.Tensor) -> torch.Tensor:
    """Per-sample ‖v_θ − v_ref‖² (mean over dimensions): the KL of two flow policies up to a σ-dependent factor."""
    return (v_theta - v_ref).pow(2).mean(tuple(range(1, v_theta.dim())))


# ------------------------------------------------------------------------------------------------ old policy, EMA


def old_eta(step: int, rate: float, cap: float) -> float:
    """η of the old-policy update after optimizer step ``step`` (1-based): min(rate·step, cap). Early on the old
    policy follows the trained one closely (η ≈ 0), later it lags (η = cap)."""
    return min(rate * step, cap)


def soft_update(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]], eta: float) -> None:
    """target ← η·target + (1 − η)·source for every (source, target) pair, in place, no gradient."""
    import torch

    with torch.no_grad():
        for source, target in pairs:
            target.mul_(eta).add_(source.detach().to(target.dtype), alpha=1.0 - eta)


def ema_decay(step: int, decay: float) -> float:
    """The EMA decay after optimizer step ``step`` (1-based): min(decay, (1 + step)/(10 + step)), so the first
    steps are not dominated by the initial weights."""
    return min(decay, (1.0 + step) / (10.0 + step))


# ------------------------------------------------------------------------------------------------ the algorithm


def ode_sample(adapter: Adapter, cond: Conditions, seeds: Sequence[int], steps: int, lora: str | None,
               sigmas: torch.Tensor | None = None) -> torch.Tensor:
    """x₀ ``[B, N, C]`` by Euler on the flow ODE from each seed's noise, with the named adapter; no gradients."""
    import torch

    sigmas = adapter.sigmas(steps) if sigmas is None else sigmas
    x = adapter.noise(seeds)
    with torch.no_grad():
        for i in range(len(sigmas) - 1):
            x = x + (sigmas[i + 1] - sigmas[i]) * adapter.velocity(x, sigmas[i].expand(x.shape[0]), cond, lora)
    return x



class NFT:
    name = "nft"

    def __init__(self, config: RLConfig) -> None:
        self.config = config
        self.nft = config.nft
        self.units = config.nft.timesteps
        self._sigmas: torch.Tensor | None = None

    def schedule(self, adapter: Adapter) -> torch.Tensor:
        if self._sigmas is None:
            self._sigmas = adapter.sigmas(self.config.sampling.steps)
        return self._sigmas

    def rollout(self, adapter: Adapter, cond: Conditions, seeds: Sequence[int]) -> Rollout:
        """The old adapter's ODE samples: deterministic given the seeds."""
        x0 = ode_sample(adapter, cond, seeds, self.config.sampling.steps, OLD, self.schedule(adapter))
        return Rollout(x0=x0, cond=cond, seeds=tuple(seeds), images=adapter.decode(x0))

    def draws(self, adapter: Adapter, rollout: Rollout, step: int, unit: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Fresh noise ``[B, N, C]`` and σ ``[B]`` (one of the schedule's, excluding 0) per sample, from its seed."""
        import torch

        sigmas = self.schedule(adapter)[:-1].cpu()
        noise, picked = [], []
        for seed in rollout.seeds:
            gen = torch.Generator("cpu").manual_seed(derive_seed(seed, "nft", step, unit))
            picked.append(sigmas[int(torch.randint(len(sigmas), (1,), generator=gen))])
            noise.append(torch.randn(rollout.x0.shape[1:], generator=gen, dtype=torch.float32))
        return torch.stack(noise).to(rollout.x0.device), torch.stack(picked).to(rollout.x0.device)

    def prepare(self, adapter: Adapter, rollout: Rollout, step: int, unit: int) -> dict[str, torch.Tensor]:
        """The unit's fresh x_σ and σ, and the old and reference velocities there (no gradients)."""
        import torch

        noise, sigma = self.draws(adapter, rollout, step, unit)
        s = sigma.view(-1, *([1] * (rollout.x0.dim() - 1)))
        out = {"x_t": (1.0 - s) * rollout.x0 + s * noise, "sigma": sigma}
        with torch.no_grad():
            out["v_old"] = adapter.velocity(out["x_t"], sigma, rollout.cond, OLD)
            if self.nft.kl > 0:
                out["v_ref"] = adapter.velocity(out["x_t"], sigma, rollout.cond, None)
        return out

    def loss(self, adapter: Adapter, rollout: Rollout, advantages: torch.Tensor, step: int, unit: int,
             prepared: Mapping[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        import torch

        valid = ~torch.isnan(advantages)
        r = optimality(advantages, self.nft.adv_clip).to(rollout.x0.device)
        ready = prepared if prepared is not None else self.prepare(adapter, rollout, step, unit)
        x_t, sigma, v_old, v_ref = ready["x_t"], ready["sigma"], ready["v_old"], ready.get("v_ref")
        v_theta = adapter.velocity(x_t, sigma, rollout.cond, TRAINED)
        per, pos, neg = nft_loss(rollout.x0, x_t, sigma, v_theta, v_old, r, self.nft.beta)
        kl = velocity_kl(v_theta, v_ref) if v_ref is not None else torch.zeros_like(per)
        per = per + self.nft.kl * kl
        mask = valid.to(per.device)
        per = torch.where(mask, per, torch.zeros_like(per))
        n = max(int(mask.sum()), 1)
        stats = {"loss": float(per.detach().sum()) / n, "kl": float((kl.detach() * mask).sum()) / n,
                 "nft_pos": float((pos.detach() * mask).sum()) / n, "nft_neg": float((neg.detach() * mask).sum()) / n,
                 "r_mean": float((r * mask).sum()) / n}
        return per, stats

    def after_optimizer_step(self, adapter: Adapter, step: int) -> dict[str, float]:
        eta = old_eta(step, self.nft.old_rate, self.nft.old_max)
        soft_update(adapter.lora_pairs(), eta)
        return {"old_eta": eta}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        return None
