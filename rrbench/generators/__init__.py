"""Plug-ins of this kind; each module registers itself with a decorator from rrbench.registry."""
