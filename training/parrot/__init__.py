"""PARROT (Preference-Anchored Rationalization, RationalRewards arXiv 2604.11626): the stages.

``anchor`` (a teacher explains each human preference in the critic's format) -> ``filter`` (consistency predicates,
each counted) -> ``build-sft`` (TRL prompt-completion dataset, ShareGPT export) -> ``sft`` (TRL SFTTrainer through
accelerate). ``import-sft`` reads the released TIGER-Lab/RationalRewards-SFTData layout. Each stage writes a stage
directory (``rrbench_train.parrot.stage``).
"""
