"""Accept rules of test-time refine: which images the critic's aspect scores keep, and which are made again.

Named and recorded in every refine stage's spec. The reference is the RationalRewards repository
(TIGER-AI-Lab/RationalRewards, commit 44e27ab, ``test_time_prompt_tuning/inference_with_refinedprompt.py``):

* ``rr-code`` (the default): keep an image when Text Faithfulness >= 3 and Physical and Visual Quality >= 3
  (lines 148-150; Image Faithfulness and Text Rendering are not read), quirks included: a missing score counts 0;
  an N/A that the comparison reaches keeps the image (the code's TypeError skips the row, line 190).
* ``rr-paper``: the paper's text: regenerate when any applicable aspect is below 3 (N/A aspects are skipped).
* ``always``: regenerate every image (the baseline refiners, which give no scores, use this one).
* ``best-of``: regenerate what ``rr-code`` would, critique the new image, and keep whichever of the two the critic
  scores higher (its aggregated score; a tie keeps the earlier image). The critic chooses, not the benchmark judge.
"""

from __future__ import annotations

from collections.abc import Mapping

from rrbench.types import UserError

THRESHOLD = 3.0
TF, IF, PVQ, TR = "Text Faithfulness", "Image Faithfulness", "Physical and Visual Quality", "Text Rendering"
RULES: dict[str, str] = {
    "rr-code": "keep if Text Faithfulness >= 3 and Physical and Visual Quality >= 3 (the reference code, its N/A "
               "and missing-score quirks included)",
    "rr-paper": "regenerate if any applicable aspect < 3 (the paper's text; N/A aspects are skipped)",
    "always": "regenerate every image",
    "best-of": "regenerate as rr-code, then keep the one of the two images the critic scores higher",
}
SCORED = ("rr-code", "rr-paper", "best-of")  # the rules that read aspect scores


def check_rule(name: str, refiner_only: bool, critic: str) -> str:
    if name not in RULES:
        raise UserError(f"unknown accept rule {name!r} (known: {', '.join(RULES)})")
    if refiner_only and name in SCORED:
        raise UserError(f"critic '{critic}' only rewrites the request and gives no aspect scores, so accept rule "
                        f"{name!r} cannot choose; use --accept always")
    return name


def keeps(rule: str, aspects: Mapping[str, float | None]) -> bool:
    """Whether ``rule`` keeps an image with these aspect scores (None: not applicable)."""
    if rule == "always":
        return False
    if rule == "rr-paper":
        return all(value is None or value >= THRESHOLD for value in aspects.values())
    return _reference_keeps(aspects)


def _reference_keeps(aspects: Mapping[str, float | None]) -> bool:
    """Line 150, ``text >= 3 and physical >= 3``, read as Python runs it: a missing score is 0 (``.get(.., 0)``,
    lines 148-149), and an N/A (the string "N/A" there) raises TypeError when it is compared, which the ``except``
    of line 190 turns into skipping the row: the base image stays. Python compares Text Faithfulness first and stops
    at a low one, so an N/A Physical and Visual Quality keeps the image only when Text Faithfulness is >= 3."""
    text = aspects.get(TF, 0.0)
    if text is None:
        return True
    if text < THRESHOLD:
        return False
    physical = aspects.get(PVQ, 0.0)
    return physical is None or physical >= THRESHOLD
