"""Flow-GRPO (training/rl/grpo.py, issue 18): the SDE, log-probabilities, KL, clipping and masking against
hand-worked numbers and closed forms; then, on the tiny random Flux, the ratio ≡ 1 invariant, float32 log-probs
under bf16 and fp16 models, and a learning signal through the real trainer against a shuffled-reward control."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from rrbench import UserError
from rrbench_train.rl.config import GRPOConfig, RLConfig, load_config
from rrbench_train.rl.grpo import (
    GRPO,
    clipped_surrogate,
    gaussian_kl,
    gaussian_logprob,
    noise_cap,
    sde_sample,
    sde_step,
    transition_loss,
)
from rrbench_train.rl.nft import group_advantages
from tests.rl_common import (
    assert_prepared_is_inline,
    learnt_and_control,
    one_thread,
    register_rewards,
    tiny_config,
    tiny_flux,
    write_config,
)

__all__ = ["tiny_flux"]  # the session fixture, imported so pytest finds it
NAN = float("nan")


_one_thread = pytest.fixture(autouse=True)(one_thread)


# ------------------------------------------------------------------------------------ the SDE, by hand


def test_sde_step_hand_worked() -> None:
    # x = 1, v = 0.5, σ = 0.5 -> 0.25, a = 0.5: g² = 0.25·0.5/0.5 = 0.25, h = 0.25,
    # μ = 1 − 0.25·(0.5 + 0.25/(2·0.5)·(1 + 0.5·0.5)) = 1 − 0.25·0.8125 = 0.796875, s = √(0.25·0.25) = 0.25
    mean, std = sde_step(torch.tensor([[1.0]]), torch.tensor([[0.5]]), 0.5, 0.25, noise_level=0.5, sigma_cap=0.9)
    assert mean.item() == pytest.approx(0.796875, abs=1e-7)
    assert std == pytest.approx(0.25, abs=1e-12)
    assert mean.dtype == torch.float32
    # σ = 1 takes g at the cap: g² = 0.25·0.9/0.1 = 2.25, h = 0.5, s = √1.125; μ = 2 − 0.5·(0 + 2.25/2·2) = 0.875
    mean, std = sde_step(torch.tensor([[2.0]]), torch.tensor([[0.0]]), 1.0, 0.5, noise_level=0.5, sigma_cap=0.9)
    assert mean.item() == pytest.approx(0.875, abs=1e-7)
    assert std == pytest.approx(math.sqrt(1.125), abs=1e-12)
    assert noise_cap(torch.tensor([1.0, 0.75, 0.5, 0.0])) == 0.75
    with pytest.raises(ValueError, match="towards the data"):
        sde_step(torch.zeros(1, 1), torch.zeros(1, 1), 0.5, 0.5, 0.7, 0.9)


def test_noise_zero_is_the_euler_ode_on_a_point_mass() -> None:
    # Data = the point c: x_σ = (1−σ)c + σε, so v(x, σ) = (x − c)/σ and the ODE solution is x(σ) = c + (x₁ − c)·σ.
    # An Euler step gives c + (x − c)·σ'/σ, exact on this field: every stored latent must equal the closed form.
    c = 0.75
    sigmas = [1.0, 0.8, 0.55, 0.3, 0.1, 0.0]
    noise = torch.tensor([[-1.5], [0.25], [2.0]])
    latents, log_probs = sde_sample(lambda x, s: (x - c) / s[:, None], noise, sigmas, noise_level=0.0)
    assert latents.shape == (3, 6, 1) and log_probs.shape == (3, 5)
    for i, sigma in enumerate(sigmas):
        torch.testing.assert_close(latents[:, i], c + (noise - c) * sigma, rtol=0, atol=1e-6)
    assert latents[:, -1].flatten().tolist() == pytest.approx([c] * 3, abs=1e-6)
    assert torch.isnan(log_probs).all()


def test_the_sde_keeps_the_flow_marginals() -> None:
    # Data x₀ ~ N(m, s²): x_σ ~ N((1−σ)m, (1−σ)²s² + σ²) and v = E[ε − x₀ | x_σ] in closed form. At noise 0.7 the
    # SDE must reach the data distribution, as the ODE does; a wrong sign or factor in the score term would not.
    m, s = 0.5, 0.3

    def velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        t = sigma[:, None]
        var = (1 - t) ** 2 * s**2 + t**2
        centred = x - (1 - t) * m
        return t / var * centred - (m + (1 - t) * s**2 / var * centred)

    gen = torch.Generator().manual_seed(0)
    latents, log_probs = sde_sample(velocity, torch.randn(40000, 1, generator=gen), torch.linspace(1, 0, 101), 0.7,
                                    generator=gen)
    final, half = latents[:, -1].flatten(), latents[:, 50].flatten()  # σ = 0 and σ = 0.5
    assert final.mean().item() == pytest.approx(m, abs=0.01)
    assert final.std().item() == pytest.approx(s, abs=0.01)
    assert half.mean().item() == pytest.approx(0.25, abs=0.01)
    assert half.std().item() == pytest.approx(math.sqrt(0.25 * 0.09 + 0.25), abs=0.01)
    assert torch.isfinite(log_probs).all() and log_probs.dtype == torch.float32


def test_gaussian_logprob_hand_worked() -> None:
    # x = (1, 3), μ = (0, 1), s = 2: z = (0.5, 1), mean of −z²/2 = −0.3125, minus log 2 and ½·log 2π
    lp = gaussian_logprob(torch.tensor([[1.0, 3.0]]), torch.tensor([[0.0, 1.0]]), 2.0)
    assert lp.item() == pytest.approx(-0.3125 - 0.6931471806 - 0.9189385332, abs=1e-6)
    assert lp.dtype == torch.float32
    bf = gaussian_logprob(torch.tensor([[1.0, 3.0]], dtype=torch.bfloat16),
                          torch.tensor([[0.0, 1.0]], dtype=torch.bfloat16), 2.0)
    assert bf.dtype == torch.float32 and bf.item() == pytest.approx(lp.item(), abs=1e-6)
    with pytest.raises(ValueError, match="std > 0"):
        gaussian_logprob(torch.zeros(1, 2), torch.zeros(1, 2), 0.0)


def test_gaussian_kl_hand_worked() -> None:
    # KL(N(1, 1) ‖ N(0, 4)) = log 2 + (1 + 1)/(2·4) − ½ = 0.6931472 − 0.25
    assert gaussian_kl(torch.tensor([[1.0]]), 1.0, torch.tensor([[0.0]]), 2.0).item() == pytest.approx(
        0.6931471806 - 0.25, abs=1e-6)
    # equal s = 2, means (0, 3) vs (0, 0): elements 0 and 9/8, averaged: 0.5625
    assert gaussian_kl(torch.tensor([[0.0, 3.0]]), 2.0, torch.zeros(1, 2), 2.0).item() == pytest.approx(0.5625)
    assert gaussian_kl(torch.ones(2, 3), 0.3, torch.ones(2, 3), 0.3).tolist() == [0.0, 0.0]


def test_clipping_acts_at_plus_minus_eps() -> None:
    ratios = torch.tensor([1.2, 0.8, 0.8, 1.2, 1.05, 0.95])
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0, 1.0, -1.0])
    log_ratio = torch.log(ratios).requires_grad_(True)
    loss, ratio, clipped = clipped_surrogate(log_ratio, torch.zeros(6), adv, 0.1)
    # ε = 0.1. A > 0, r = 1.2: −min(1.2, 1.1) = −1.1, clipped; A > 0, r = 0.8: the pessimistic −0.8, unclipped;
    # A < 0, r = 0.8: max(0.8, 0.9) = 0.9, clipped; A < 0, r = 1.2: 1.2 unclipped; inside the band: −A·r.
    assert loss.detach().tolist() == pytest.approx([-1.1, -0.8, 0.9, 1.2, -1.05, 0.95], abs=1e-6)
    assert clipped.tolist() == [True, False, True, False, False, False]
    loss.sum().backward()
    # d(−A·r)/d log r = −A·r where unclipped; a clipped sample carries no gradient
    assert log_ratio.grad is not None
    assert log_ratio.grad.tolist() == pytest.approx([0.0, -0.8, 0.0, 1.2, -1.05, 0.95], abs=1e-6)
    torch.testing.assert_close(ratio.detach(), ratios)
    # the default ε = 1e-4 (float64 to resolve it): r = e^{2e-4} with A = 1 is held at 1 + 1e-4, r = e^{5e-5} is not
    f64 = torch.float64
    loss, _, clipped = clipped_surrogate(torch.tensor([2e-4, 5e-5], dtype=f64), torch.zeros(2, dtype=f64),
                                         torch.ones(2, dtype=f64), 1e-4)
    assert loss.tolist() == pytest.approx([-(1 + 1e-4), -math.exp(5e-5)], abs=1e-12)
    assert clipped.tolist() == [True, False]


def toy_transition(w: torch.Tensor, advantages: torch.Tensor, **cfg: Any
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """transition_loss on the 1-parameter field v = w·x over one stored step of a 3-sample, 4-dim trajectory."""
    sigmas = torch.tensor([1.0, 0.5, 0.0])
    gen = torch.Generator().manual_seed(1)
    latents, log_probs = sde_sample(lambda x, s: 0.3 * x, torch.randn(3, 4, generator=gen), sigmas, 0.7, gen)
    return transition_loss(lambda x, s: w * x, lambda x, s: torch.zeros_like(x), latents[:, 0], latents[:, 1],
                           1.0, 0.5, noise_cap(sigmas), log_probs[:, 0], advantages, GRPOConfig(**cfg))


def test_failed_rewards_never_enter_the_advantages_or_the_loss() -> None:
    # the trainer's advantages (nft.group_advantages, grpo.std "group"): failures leave every statistic alone ...
    rewards = torch.tensor([1.0, NAN, 3.0, NAN, 5.0, 7.0, 2.0, NAN])
    groups = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    adv = group_advantages(rewards, groups, "group", clip=5.0)
    d = 1 / (1 + 1e-4)  # groups {1, 3} and {5, 7}: mean ± 1, std 1; group 2 has one valid reward: no signal
    assert adv[[0, 2, 4, 5]].tolist() == pytest.approx([-d, d, -d, d], abs=1e-6)
    assert torch.isnan(adv[[1, 3, 6, 7]]).all()
    # ... and a NaN advantage gives exactly 0 loss and 0 gradient: the batch equals the batch without it
    w = torch.tensor(0.3, requires_grad=True)
    loss, stats = toy_transition(w, torch.tensor([1.5, NAN, -0.5]), clip_range=0.2, kl=0.5)
    assert loss[1].item() == 0.0 and stats["valid"].tolist() == [True, False, True]
    (grad_with,) = torch.autograd.grad(loss.sum(), w)
    loss_alone, _ = toy_transition(w, torch.tensor([1.5, 0.0, -0.5]), clip_range=0.2, kl=0.5)
    kept = loss_alone[[0, 2]].sum()
    (grad_alone,) = torch.autograd.grad(kept, w)
    assert loss.sum().item() == pytest.approx(kept.item(), abs=1e-7)
    assert torch.isfinite(grad_with) and grad_with.item() == pytest.approx(grad_alone.item(), abs=1e-7)


def test_the_kl_term_is_the_closed_form_between_the_two_means() -> None:
    # A = 0 leaves β·KL alone. Step σ = 1 -> 0.5, cap 0.5: g² = 0.49·0.5/0.5 = 0.49, h = 0.5, s² = g²·h. At σ = 1
    # the score term g²/(2σ)·(x + (1 − σ)·v) does not involve v, so μ_θ − μ_ref = −h·(w·x − 0) = −0.5·w·x and
    # KL = mean(Δμ²) / (2s²).
    w = torch.tensor(0.3)
    loss, stats = toy_transition(w, torch.zeros(3), kl=0.04)
    sigmas = torch.tensor([1.0, 0.5, 0.0])
    gen = torch.Generator().manual_seed(1)
    x = sde_sample(lambda x, s: 0.3 * x, torch.randn(3, 4, generator=gen), sigmas, 0.7, gen)[0][:, 0]
    expected = ((0.5 * 0.3 * x) ** 2).mean(1) / (2 * 0.49 * 0.5)
    torch.testing.assert_close(stats["kl"], expected)
    torch.testing.assert_close(loss.detach(), 0.04 * expected)


def test_the_config_refuses_a_noiseless_rollout(tmp_path: Path) -> None:
    for bad, match in (("grpo.noise_level=0", "noise_level must be above 0"),
                       ("grpo.timestep_fraction=0", "timestep_fraction"), ("grpo.clip_range=0", "clip_range")):
        with pytest.raises(UserError, match=match):
            GRPO(grpo_config(tmp_path / "pipe", tmp_path, bad))


def test_trained_timesteps_are_a_seeded_subset(tmp_path: Path) -> None:
    grpo = GRPO(grpo_config(tmp_path / "pipe", tmp_path, "grpo.timestep_fraction=0.5", "sampling.steps=6"))
    assert grpo.units == 3
    picked = [grpo.timestep(7, u) for u in range(grpo.units)]
    assert len(set(picked)) == 3 and all(0 <= k < 6 for k in picked)
    assert picked == [grpo.timestep(7, u) for u in range(grpo.units)]  # the same on every process and rerun
    assert [GRPO(grpo_config(tmp_path / "pipe", tmp_path)).timestep(7, u) for u in range(4)] == [0, 1, 2, 3]


# --------------------------------------------------------------------------------------------- tiny Flux


def grpo_config(pipe: Path, out: Path, *overrides: str, **values: Any) -> RLConfig:
    register_rewards()
    values = {"algorithm": "grpo", **values}
    return load_config(write_config(out / "config.yaml", tiny_config(pipe, out, **values)), overrides)


def build(pipe: Path, out: Path, *overrides: str) -> tuple[Any, GRPO]:
    from rrbench_train.rl.adapters import build_adapter

    config = grpo_config(pipe, out, *overrides)
    return build_adapter(config, torch.device("cpu")), GRPO(config)


PROMPTS = ["a photo of a cat", "a red dog on the sofa", "a blue cup", "an astronaut in the sky"]


@pytest.mark.parametrize("cfg", ["1.0", "2.5"])
def test_the_ratio_is_exactly_one_on_the_first_inner_step(tiny_flux: Path, tmp_path: Path, cfg: str) -> None:
    # Trained LoRA away from the base (init_scale), so the KL and the gradients are not trivially 0. Same
    # parameters, same stored trajectory, the trainer's micro-batch = the sampling batch: every ratio is 1.0 exactly.
    adapter, grpo = build(tiny_flux, tmp_path, "lora.init_scale=0.1", "grpo.kl=0.04", f"grpo.cfg={cfg}")
    with torch.no_grad():
        rollout = grpo.rollout(adapter, adapter.encode(PROMPTS, None), [11, 12, 13, 14])
    assert rollout.latents is not None and rollout.log_probs is not None and rollout.sigmas is not None
    assert rollout.latents.shape[1] == 5 and rollout.log_probs.shape == (4, 4) and len(rollout.images) == 4
    torch.testing.assert_close(rollout.latents[:, -1], rollout.x0, rtol=0, atol=0)
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5])
    for unit in range(grpo.units):
        per, stats = grpo.loss(adapter, rollout, advantages, step=0, unit=unit)
        per.sum().backward()
        assert stats["ratio"] == 1.0 and stats["ratio_dev"] == 0.0 and stats["clip_frac"] == 0.0
        assert stats["kl"] > 0 and math.isfinite(stats["log_prob"])
    with_grad = {n for n, p in adapter.transformer.named_parameters() if p.grad is not None}
    assert with_grad == {n for n, _ in adapter.trainable()} and with_grad
    # the stored old log-prob is bitwise the recomputed one
    k = 2
    sig = torch.full((4,), float(rollout.sigmas[k]))
    mean, std = sde_step(rollout.latents[:, k], grpo.velocity(adapter, rollout.cond, "default")(rollout.latents[:, k],
                         sig), float(rollout.sigmas[k]), float(rollout.sigmas[k + 1]), grpo.cfg.noise_level,
                         noise_cap(rollout.sigmas))
    assert torch.equal(gaussian_logprob(rollout.latents[:, k + 1], mean, std), rollout.log_probs[:, k])


def test_the_prepared_reference_gives_the_same_loss_and_gradients(tiny_flux: Path, tmp_path: Path) -> None:
    # The trainer computes the reference's velocity while the rewards are judged (prepare), then the loss; the
    # numbers must be those of the loss computing it itself (after the trained forward, as transition_loss does).
    adapter, grpo = build(tiny_flux, tmp_path, "lora.init_scale=0.1", "grpo.kl=0.04", "grpo.cfg=2.5")
    with torch.no_grad():
        rollout = grpo.rollout(adapter, adapter.encode(PROMPTS, None), [21, 22, 23, 24])
    prepared = assert_prepared_is_inline(grpo, adapter, rollout, torch.tensor([1.0, -1.0, 0.5, -0.5]), 3, 1)
    assert set(prepared) == {"v_ref"}
    _, without_kl = build(tiny_flux, tmp_path / "nokl", "grpo.kl=0")
    assert without_kl.prepare(adapter, rollout, 3, 1) == {}


def test_a_trajectory_depends_only_on_its_seed(tiny_flux: Path, tmp_path: Path) -> None:
    adapter, grpo = build(tiny_flux, tmp_path, "lora.init_scale=0.1")
    with torch.no_grad():
        both = grpo.rollout(adapter, adapter.encode(PROMPTS[:2], None), [5, 6])
        alone = grpo.rollout(adapter, adapter.encode(PROMPTS[1:2], None), [6])
    assert both.latents is not None and alone.latents is not None
    torch.testing.assert_close(both.latents[1:], alone.latents, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(both.latents[0, 1:], both.latents[1, 1:])


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_log_probs_are_float32_and_finite_with_a_half_precision_model(tiny_flux: Path, tmp_path: Path,
                                                                      dtype: str) -> None:
    # The denoiser runs in bf16 / fp16 (CPU autocast); latents, means and log-probs stay float32, and the first
    # inner step still has ratio 1.
    adapter, grpo = build(tiny_flux, tmp_path, f"generator.dtype={dtype}", "lora.init_scale=0.1")
    assert next(p for n, p in adapter.transformer.named_parameters() if "lora_" not in n).dtype == adapter.dtype
    with torch.no_grad():
        rollout = grpo.rollout(adapter, adapter.encode(PROMPTS, None), [1, 2, 3, 4])
    assert rollout.log_probs is not None and rollout.latents is not None
    assert rollout.log_probs.dtype == torch.float32 and rollout.latents.dtype == torch.float32
    assert torch.isfinite(rollout.log_probs).all() and torch.isfinite(rollout.latents).all()
    per, stats = grpo.loss(adapter, rollout, torch.tensor([1.0, -1.0, 1.0, -1.0]), step=0, unit=1)
    assert per.dtype == torch.float32 and torch.isfinite(per).all() and stats["ratio"] == 1.0


# ------------------------------------------------------------------------------------------ learning signal


# KL 0 and an easy, honest reward (red − blue: tests/plugins/rl_rewards.py; it follows the latents through the tiny
# random VAE, where brightness hardly does): the reward must rise within a few dozen steps (TRAINING.md). The LoRA
# also adapts the output projections, as NFT's test does.
LEARN = ("seed=0", "train.epochs=30", "train.lr=0.03", "train.save_every=1000", "sampling.group_size=16",
         "sampling.groups_per_epoch=4", "sampling.batch_size=64", "train.batch_size=64", "grpo.kl=0",
         "reward.model=red_minus_blue", "lora.targets=[to_q, to_k, to_v, to_out.0, proj_out]")


def test_grpo_raises_heldout_reward_beyond_a_shuffled_control(tiny_flux: Path, tmp_path: Path) -> None:
    """30 Flow-GRPO steps of 4 groups of 16 against the same run with each batch's rewards permuted."""
    start, learnt, control = learnt_and_control(lambda name: grpo_config(tiny_flux, tmp_path / name, *LEARN))
    # measured (permutation seed 1; a sample's red − blue varies by ~0.01 within a batch): run seed 0: start
    # -0.11123, GRPO -0.00558, control -0.11588 (margin 0.110); seed 1: -0.11135, 0.00737, -0.13116 (0.139);
    # seed 2: -0.11110, 0.00800, -0.15001 (0.158)
    assert learnt - control > 0.06, (start, learnt, control)
    assert learnt - start > 0.06, (start, learnt, control)
    assert abs(control - start) < 0.03, (start, learnt, control)
