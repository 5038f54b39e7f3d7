"""rrbench_train: training that produces and uses rrbench's reward models (``pip install 'rrbench[train]'``).

``parrot``: PARROT (anchored rationales from a teacher, consistency filtering, SFT of the critic). It imports
rrbench's public API only (``import rrbench``), and rrbench never imports it. The command is ``rrbench-train``.
"""
