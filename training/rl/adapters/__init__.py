"""Thin adapters over diffusers pipelines: what the RL loop needs from a generator (encode, velocity, sample, decode,
LoRA), one file per pipeline family, named as rrbench's ``@generator``s."""
