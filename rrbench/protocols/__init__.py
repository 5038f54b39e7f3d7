"""Per-sample steps of a run (``_base.SampleStep``): ``pairwise`` judges a preference sample, ``generate`` makes a
generation task's images, ``judge_images`` judges images made before. Not to be confused with the *scoring
protocol* (``rrbench.types.Protocol``: order, tie and failure policies, metrics), which every number names."""
