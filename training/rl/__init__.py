"""Diffusion RL with any rrbench reward model (``rrbench-train rl --config FILE``): DiffusionNFT (the paper's) and
Flow-GRPO on diffusers components, peft LoRA and accelerate. See docs/rl.md."""
