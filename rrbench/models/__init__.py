"""Reward models: one module per model family, each registering itself with ``@rrbench.registry.reward_model``.
``_base`` is the interface; other ``_``-prefixed modules are shared parts (parsers, VLM plumbing), not plug-ins."""
