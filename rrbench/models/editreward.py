"""`editreward`: EditReward (Wu et al. 2025, "EditReward: A Human-Aligned Reward Model for Instruction-Guided Image
Editing", arXiv 2509.26346), TIGER-Lab's scalar reward for edits.

A Qwen2.5-VL-7B (or MiMo-VL-7B-SFT-2508, the same architecture class) with two reward heads
(``rm_head_type: ranknet_multi_head``, ``pooling_strategy: mean`` in both released configs). Each head reads the
``<|Reward|>`` token of its own prompt: ``head_0`` after the instruction-following prompt, ``head_1`` after the
visual-quality prompt; both prompts show the source image then the edited image. The model's output is the mean of the
two heads' (mu, sigma), and the score is its mu (``reward[0]`` in the README) -- the mean of the two heads' mu.

Released layout (``EditReward/inference_edit.py``): a folder with ``model.safetensors`` (or ``model.pth``), the strict
state dict of ``Qwen2_5_VLRewardModelBT_MultiHead``; config, tokenizer and processor come from the base model named by
``model_name_or_path`` in ``config/EditReward-Qwen2.5-7B-VL.yaml`` / ``EditReward-MiMo-VL-7B-SFT-2508.yaml``.
``-M variant=qwen2.5-vl`` (default) or ``mimo-vl`` picks the hub ids of the checkpoint and its base; ``-M path=`` and
``-M base=`` override them (a ``path`` with a ``config.json`` is its own base). See ``_qwen_reward`` for the shared
architecture, preprocessing and their sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rrbench.doctor import FileNeed
from rrbench.models import _qwen_reward as qr
from rrbench.models._base import RewardModel
from rrbench.registry import reward_model
from rrbench.types import DataError, FailureKind, Judgement, Query, UserError

if TYPE_CHECKING:
    from PIL import Image as PILImage

# variant -> (checkpoint hub id, base model hub id). The checkpoint ids are the ones of TIGER-Lab's EditReward
# collection on the hub; the bases are `model_name_or_path` of the released configs.
VARIANTS = {
    "qwen2.5-vl": ("TIGER-Lab/EditReward-Qwen2.5-VL-7B", "Qwen/Qwen2.5-VL-7B-Instruct"),
    "mimo-vl": ("TIGER-Lab/EditReward-MiMo-VL-7B-SFT-2508", "XiaomiMiMo/MiMo-VL-7B-SFT-2508"),
}
CHECKPOINT_FILES = ("model.safetensors", "model.pth")  # inference_edit.py tries model.pth first; either is complete
HEADS = ("rm_heads.head_0", "rm_heads.head_1")  # batch_dim1 -> head_0, batch_dim2 -> head_1

_INPUTS = (
    "**Inputs Provided:**  \n"
    "- Source Image (before editing)  \n"
    "- Edited Image (after applying the instruction)  \n"
    "- Text Instruction  \n"
    "\n"
    "**Sub-Dimensions to Evaluate:**\n"
    "\n"
)
# EditReward/dataset/prompts.py, INSTRUCTION_EDIT_FOLLOWING (reward_dim "dim1"); trailing spaces are part of it.
INSTRUCTION_EDIT_FOLLOWING = (
    "\nYou are tasked with evaluating an edited image **in comparison with the original source image** based on "
    "**Instruction Following & Semantic Fidelity**, and assigning a score from 1 to 4, with 1 being the worst and 4 "
    "being the best.  \n"
    "This dimension focuses on how accurately, completely, and exclusively the model executed the given text "
    "instruction.\n"
    "\n"
    + _INPUTS
    + "- **Semantic Accuracy:**  \n"
    "  Assess whether the edited content accurately captures the semantics of the instruction. The edited result "
    "should precisely match the intended meaning. For example, if the instruction is \"replace apples with "
    "oranges,\" the object must clearly be oranges, not other fruits.\n"
    "\n"
    "- **Completeness of Editing:**  \n"
    "  Check whether **all parts** of the instruction are fully executed. For multi-step edits (e.g., \"replace a "
    "red car with a blue bicycle\"), both the color change and the object replacement must be done without "
    "omissions.\n"
    "\n"
    "- **Exclusivity of Edit (No Over-Editing):**  \n"
    "  Ensure that only the requested parts are changed. The rest of the image (as seen in the source) should "
    "remain unaltered. For example, if the instruction only involves replacing an object, the background, lighting, "
    "and unrelated objects should not be unnecessarily modified.\n"
    "\n"
    "**Scoring Criteria:**\n"
    "- **4 (Very Good):** Perfectly accurate, complete, and exclusive execution of the instruction.  \n"
    "- **3 (Relatively Good):** Largely correct, but with minor omissions or slight over-editing.  \n"
    "- **2 (Relatively Poor):** Major misinterpretation, incomplete edits, or noticeable unintended changes.  \n"
    "- **1 (Very Poor):** Instruction ignored or completely wrong execution.\n"
    "\n"
    "Text instruction - {text_prompt}\n"
)
# EditReward/dataset/prompts.py, INSTRUCTION_EDIT_QUALITY (reward_dim "dim2").
INSTRUCTION_EDIT_QUALITY = (
    "\nYou are tasked with evaluating an edited image **in comparison with the original source image** based on "
    "**Visual Quality & Realism**, and assigning a score from 1 to 4, with 1 being the worst and 4 being the best.  \n"
    "This dimension focuses on how realistic, artifact-free, and aesthetically appealing the edited image is, while "
    "remaining consistent with the source image.\n"
    "\n"
    + _INPUTS
    + "- **Plausibility & Physical Consistency:**  \n"
    "  Check whether the edit aligns with the laws of physics and the scene context. Lighting, shadows, "
    "reflections, perspective, size, and interactions with the environment should all appear natural compared to "
    "the source image.\n"
    "\n"
    "- **Artifact-Free Quality:**  \n"
    "  Look for technical flaws such as blur, distortions, pixel misalignment, unnatural textures, or seams around "
    "edited regions. High-quality results should be free from such visible artifacts.\n"
    "\n"
    "- **Aesthetic Quality:**  \n"
    "  Evaluate the overall harmony and visual appeal. The image should look natural, balanced, and pleasant. "
    "Colors, composition, and atmosphere should enhance the image rather than degrade it.\n"
    "\n"
    "**Scoring Criteria:**\n"
    "- **4 (Very Good):** Perfectly realistic, artifact-free, seamless, and aesthetically pleasing.  \n"
    "- **3 (Relatively Good):** Mostly realistic and clean, with only minor flaws that do not significantly "
    "distract.  \n"
    "- **2 (Relatively Poor):** Noticeable physical inconsistencies or visible artifacts that make the edit "
    "unnatural.  \n"
    "- **1 (Very Poor):** Severe artifacts, incoherent composition, or visually unusable result.\n"
    "\n"
    "Text instruction - {text_prompt}\n"
)
PROMPTS = (INSTRUCTION_EDIT_FOLLOWING, INSTRUCTION_EDIT_QUALITY)  # in head order


def prompt_texts(instruction: str) -> tuple[str, str]:
    """The text of the user turn for each head (after the two images)."""
    first, second = (p.format(text_prompt=instruction) + qr.PROMPT_WITH_SPECIAL_TOKEN for p in PROMPTS)
    return first, second


class EditReward(RewardModel):
    name = "editreward"

    def __init__(self, variant: str, path: str, base: str | None, device: str, dtype: str, batch_size: int) -> None:
        super().__init__(variant=variant, path=path, base=base, dtype=dtype)
        self.path, self.base, self.device, self.dtype, self.batch_size = path, base, device, dtype, batch_size
        self.default_base = VARIANTS[variant][1]
        self.net: qr.RewardVLM | None = None

    async def astart(self, generation: str = "t2i") -> None:
        if generation != "edit":
            raise UserError("editreward scores an edit (source image + edited image + instruction); "
                            f"this task's generation kind is {generation!r}")
        if self.net is None:
            checkpoint, base = (need.resolve() for need in self.needs())
            self.net = qr.load(str(base), str(checkpoint), CHECKPOINT_FILES, "Qwen2_5_VLForConditionalGeneration",
                               HEADS, self.device, self.dtype)

    def needs(self) -> list[FileNeed]:
        """The files ``astart`` reads (``rrbench doctor`` checks the same list)."""
        return qr.needs(self.path, self.base, CHECKPOINT_FILES, VARIANTS[self.config["variant"]][0], self.default_base)

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        if self.net is None:
            raise RuntimeError("astart() loads the weights before score()")
        net = self.net
        texts: tuple[list[str], list[str]] = ([], [])
        images: list[PILImage.Image] = []
        ok: list[int] = []
        out: list[Judgement] = []
        for i, query in enumerate(queries):
            try:
                if len(query.source) != 1:
                    raise DataError(f"editreward needs exactly one source image, got {len(query.source)}")
                pair = [qr.fit_image(query.source[0].image()), qr.fit_image(query.candidates[0].image())]
            except (DataError, ValueError) as exc:  # one broken sample fails its own query, never the batch
                out.append(Judgement.failed(FailureKind.DATA, str(exc)))
                continue
            images.extend(pair)
            for head_texts, text in zip(texts, prompt_texts(query.prompt), strict=True):
                head_texts.append(net.chat([{"type": "image"}, {"type": "image"}, {"type": "text", "text": text}]))
            ok.append(i)
            out.append(Judgement())
        if ok:
            per_head = [net.rewards(t, images, head) for t, head in zip(texts, HEADS, strict=True)]
            mu = ((per_head[0] + per_head[1]) / 2)[:, 0].tolist()  # pooling_strategy "mean", then mu
            for i, value in zip(ok, mu, strict=True):
                out[i] = Judgement(scores=(float(value),))
        return out


@reward_model("editreward",
              description="EditReward: Qwen2.5-VL / MiMo-VL reward for edits (source + edit + instruction)",
              extra="transformers", paper="arXiv 2509.26346")
def editreward(variant: str = "qwen2.5-vl", path: str | None = None, base: str | None = None, device: str = "auto",
               dtype: str = "auto", batch_size: int = 2) -> RewardModel:
    if variant not in VARIANTS:
        raise UserError(f"editreward: variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"editreward: batch_size must be a positive integer, got {batch_size!r}")
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise UserError(f"editreward: dtype must be auto, float32, bfloat16 or float16, not {dtype!r}")
    return EditReward(variant=variant, path=path or VARIANTS[variant][0], base=base, device=device, dtype=dtype,
                      batch_size=batch_size)
