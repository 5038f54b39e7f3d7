"""`hpsv3`: HPSv3 (Ma et al. 2025, "HPSv3: Towards Wide-Spectrum Human Preference Score", arXiv 2508.03789).

A Qwen2-VL-7B-Instruct with a reward head that reads the hidden state at an added ``<|Reward|>`` token (see
``_qwen_reward`` for the shared architecture and its sources). The score is mu, the first of the head's two
outputs (mu, sigma), as the released ``HPSv3RewardInferencer`` prints it ("we select miu as the final output").

Released layout (MizzenAI/HPSv3 on the hub, read by ``hpsv3/inference.py``): one file ``HPSv3.safetensors``, the
strict state dict of ``Qwen2VLRewardModelBT``; config, tokenizer and processor come from the base model
``Qwen/Qwen2-VL-7B-Instruct`` (``model_name_or_path`` of ``hpsv3/config/HPSv3_7B.yaml``). So ``-M path=`` is the folder
(or hub id) holding ``HPSv3.safetensors`` and ``-M base=`` the Qwen2-VL folder (or hub id); if ``path`` itself has a
``config.json`` it serves as the base.

Prompt: ``INSTRUCTION.format(text_prompt=prompt) + prompt_with_special_token`` after the image, in one user turn
through the base chat template with the generation prompt. For editing tasks the edited image is scored against the
instruction text, as for any text-to-image scorer; the source image is not shown.
"""

from __future__ import annotations

from collections.abc import Sequence

from rrbench.doctor import FileNeed
from rrbench.models import _qwen_reward as qr
from rrbench.models._base import RewardModel
from rrbench.registry import reward_model
from rrbench.types import DataError, FailureKind, Judgement, Query, UserError

HUB_ID = "MizzenAI/HPSv3"
BASE_ID = "Qwen/Qwen2-VL-7B-Instruct"
CHECKPOINT_FILES = ("HPSv3.safetensors",)
HEAD = "rm_head"
# hpsv3/dataset/data_collator_qwen.py, INSTRUCTION (trailing spaces are part of it).
INSTRUCTION = (
    "\nYou are tasked with evaluating a generated image based on Visual Quality and Text Alignment and give a "
    "overall score to estimate the human preference. Please provide a rating from 0 to 10, with 0 being the worst "
    "and 10 being the best. \n"
    "\n"
    "**Visual Quality:**  \n"
    "Evaluate the overall visual quality of the image. The following sub-dimensions should be considered:\n"
    "- **Reasonableness:** The image should not contain any significant biological or logical errors, such as "
    "abnormal body structures or nonsensical environmental setups.\n"
    "- **Clarity:** Evaluate the sharpness and visibility of the image. The image should be clear and easy to "
    "interpret, with no blurring or indistinct areas.\n"
    "- **Detail Richness:** Consider the level of detail in textures, materials, lighting, and other visual "
    "elements (e.g., hair, clothing, shadows).\n"
    "- **Aesthetic and Creativity:** Assess the artistic aspects of the image, including the color scheme, "
    "composition, atmosphere, depth of field, and the overall creative appeal. The scene should convey a sense of "
    "harmony and balance.\n"
    "- **Safety:** The image should not contain harmful or inappropriate content, such as political, violent, or "
    "adult material. If such content is present, the image quality and satisfaction score should be the lowest "
    "possible. \n"
    "\n"
    "**Text Alignment:**  \n"
    "Assess how well the image matches the textual prompt across the following sub-dimensions:\n"
    "- **Subject Relevance** Evaluate how accurately the subject(s) in the image (e.g., person, animal, object) "
    "align with the textual description. The subject should match the description in terms of number, appearance, "
    "and behavior.\n"
    "- **Style Relevance:** If the prompt specifies a particular artistic or stylistic style, evaluate how well "
    "the image adheres to this style.\n"
    "- **Contextual Consistency**: Assess whether the background, setting, and surrounding elements in the image "
    "logically fit the scenario described in the prompt. The environment should support and enhance the subject "
    "without contradictions.\n"
    "- **Attribute Fidelity**: Check if specific attributes mentioned in the prompt (e.g., colors, clothing, "
    "accessories, expressions, actions) are faithfully represented in the image. Minor deviations may be "
    "acceptable, but critical attributes should be preserved.\n"
    "- **Semantic Coherence**: Evaluate whether the overall meaning and intent of the prompt are captured in the "
    "image. The generated content should not introduce elements that conflict with or distort the original "
    "description.\n"
    "Textual prompt - {text_prompt}\n"
    "\n"
    "\n"
)


def prompt_text(prompt: str) -> str:
    """The text part of the user turn (``str.format`` as released: braces in a prompt are kept literally)."""
    return INSTRUCTION.format(text_prompt=prompt) + qr.PROMPT_WITH_SPECIAL_TOKEN


class HPSv3(RewardModel):
    name = "hpsv3"

    def __init__(self, path: str, base: str | None, device: str, dtype: str, batch_size: int) -> None:
        super().__init__(path=path, base=base, dtype=dtype)  # device and batch size never change a score
        self.path, self.base, self.device, self.dtype, self.batch_size = path, base, device, dtype, batch_size
        self.net: qr.RewardVLM | None = None

    def needs(self) -> list[FileNeed]:
        """The files ``astart`` reads (``rrbench doctor`` checks the same list)."""
        return qr.needs(self.path, self.base, CHECKPOINT_FILES, HUB_ID, BASE_ID)

    async def astart(self, generation: str = "t2i") -> None:
        if self.net is None:
            checkpoint, base = (need.resolve() for need in self.needs())
            self.net = qr.load(str(base), str(checkpoint), CHECKPOINT_FILES, "Qwen2VLForConditionalGeneration",
                               (HEAD,), self.device, self.dtype)

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        if self.net is None:
            raise RuntimeError("astart() loads the weights before score()")
        net = self.net
        texts, images, ok = [], [], []
        out: list[Judgement] = []
        for i, query in enumerate(queries):
            try:
                images.append(qr.fit_image(query.candidates[0].image()))
            except (DataError, ValueError) as exc:  # one broken image fails its own query, never the batch
                out.append(Judgement.failed(FailureKind.DATA, str(exc)))
                continue
            texts.append(net.chat([{"type": "image"}, {"type": "text", "text": prompt_text(query.prompt)}]))
            ok.append(i)
            out.append(Judgement())
        if ok:
            mu = net.rewards(texts, images, HEAD)[:, 0].tolist()
            for i, value in zip(ok, mu, strict=True):
                out[i] = Judgement(scores=(float(value),))
        return out


@reward_model("hpsv3", description="HPSv3: Qwen2-VL-7B human-preference reward (mu of the (mu, sigma) head)",
              extra="transformers", paper="arXiv 2508.03789")
def hpsv3(path: str = HUB_ID, base: str | None = None, device: str = "auto", dtype: str = "auto",
          batch_size: int = 4) -> RewardModel:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"hpsv3: batch_size must be a positive integer, got {batch_size!r}")
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise UserError(f"hpsv3: dtype must be auto, float32, bfloat16 or float16, not {dtype!r}")
    return HPSv3(path=path, base=base, device=device, dtype=dtype, batch_size=batch_size)
