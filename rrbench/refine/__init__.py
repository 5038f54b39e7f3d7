"""Test-time Generate-Critique-Refine (``rrbench refine``): stages in ``run``, rules, plan, gain, summary, report.

Kept empty so that ``rrbench --help`` does not import the runner (see rrbench/refine/run.py)."""
