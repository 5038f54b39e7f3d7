"""rrbench: a reproducible harness for reward models of visual generation."""

from __future__ import annotations

__version__ = "0.1.0"
