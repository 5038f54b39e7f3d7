"""Generators: one module per diffusers pipeline family (and the offline ``painter``), each registering itself with
``@rrbench.registry.generator``. ``_base`` is the interface (seeds, requests, results), ``_pool`` the runner's
batching door to one in-process generator, ``_ray`` the same door to generators sharded over a Ray cluster."""
