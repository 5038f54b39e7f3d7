"""`laion-aesthetic`: the LAION aesthetic predictor v2 (Schuhmann, "improved-aesthetic-predictor",
github.com/christophschuhmann/improved-aesthetic-predictor; used to build LAION-Aesthetics, LAION-5B paper
arXiv 2210.08402).

An MLP on the L2-normalised CLIP ViT-L/14 image embedding, trained to regress the 1-10 rating of SAC + LAION-Logos +
AVA; the score is its output (roughly 1-10, higher is more aesthetic). It never reads the prompt: on faithfulness it
is at chance by design, and for editing tasks it scores the edited image alone.

Released layout: ``sac+logos+ava1-l14-linearMSE.pth``, a plain state dict of the repo's ``MLP(768)``
(``simple_inference.py``): ``nn.Sequential(Linear(768, 1024), Dropout(0.2), Linear(1024, 128), Dropout(0.2),
Linear(128, 64), Dropout(0.1), Linear(64, 16), Linear(16, 1))`` with the ReLUs commented out ("linear"), so keys
``layers.{0,2,4,6,7}.{weight,bias}``. It lives in the GitHub repo, not on the hub; ``-M path=`` is that file or a
folder holding it. The embedding is OpenAI ``clip.load("ViT-L/14")``'s ``encode_image``, which is transformers'
``openai/clip-vit-large-patch14`` vision tower + ``visual_projection`` (``-M clip=``, a folder or hub id; the head's
folder is used when it holds a CLIP ``config.json``). The release casts the normalised embedding to float32 for the
MLP; so do we, whatever ``-M dtype`` the CLIP tower runs in. Image: OpenAI CLIP's ``_transform(224)``: short side to
224 (bicubic), centre crop 224 with torchvision's rounding, OpenAI CLIP mean/std (``crop-round`` in ``_clip``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rrbench.doctor import FileNeed
from rrbench.models import _clip
from rrbench.models._base import RewardModel
from rrbench.registry import require, reward_model
from rrbench.types import UserError

if TYPE_CHECKING:
    import torch

HEAD = "sac+logos+ava1-l14-linearMSE.pth"
HEAD_URL = f"https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/{HEAD}"
CLIP_ID = "openai/clip-vit-large-patch14"
MLP_SIZES = (1024, 128, 64, 16, 1)  # simple_inference.py MLP: Linear layers at Sequential indices 0, 2, 4, 6, 7
DROPOUTS = (0.2, 0.2, 0.1)


def mlp_head(input_size: int) -> torch.nn.Sequential:
    """The released MLP, module for module, so ``layers.{0,2,4,6,7}`` keys land (dropouts at 1, 3, 5)."""
    nn = require("torch", "transformers").nn
    a, b, c, d, e = MLP_SIZES
    return nn.Sequential(nn.Linear(input_size, a), nn.Dropout(DROPOUTS[0]), nn.Linear(a, b), nn.Dropout(DROPOUTS[1]),
                         nn.Linear(b, c), nn.Dropout(DROPOUTS[2]), nn.Linear(c, d), nn.Linear(d, e))


def load_head(file: Path) -> Any:
    torch = require("torch", "transformers")
    state = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "layers.0.weight" not in state:
        raise UserError(f"{file} is not the aesthetic predictor's MLP state dict (no 'layers.0.weight')")
    head = mlp_head(int(state["layers.0.weight"].shape[1]))
    result = head.load_state_dict({k[len("layers."):]: v for k, v in state.items() if k.startswith("layers.")},
                                  strict=False)
    extra = [k for k in state if not k.startswith("layers.")]
    if result.missing_keys or result.unexpected_keys or extra:
        raise UserError(f"{file} does not match the aesthetic MLP: missing {sorted(result.missing_keys)[:3]}, "
                        f"unexpected {sorted(result.unexpected_keys + extra)[:3]}")
    return head


class LaionAesthetic(_clip.ClipFamilyModel):
    name = "laion-aesthetic"
    transform_mode = "crop-round"

    def __init__(self, path: str | None, clip: str | None, device: str, dtype: str, batch_size: int) -> None:
        super().__init__(path=path or "", device=device, dtype=dtype, batch_size=batch_size, clip=clip)
        self.clip_ref = clip
        self.encoder: _clip.DualEncoder | None = None
        self.head: Any = None

    def needs(self) -> list[FileNeed]:
        """The files ``load`` reads (``rrbench doctor`` checks the same list): the MLP head (no default: it is not
        on the hub), and the CLIP of ``-M clip=``, else of the head's folder when it holds one, else ViT-L/14."""
        fetch = f"curl -LO '{HEAD_URL}'"
        head = FileNeed("aesthetic head", self.path, "path", ((HEAD,),), fetch, file_ok=True,
                        unset=f"laion-aesthetic needs -M path= naming {HEAD} or its folder (fetch it with `{fetch}`)")
        folder = head.locate()
        clip_ref = self.clip_ref or (str(folder) if folder and (folder / "config.json").is_file() else CLIP_ID)
        return [head, FileNeed("CLIP", clip_ref, "clip", (("config.json",), _clip.WEIGHT_FILES),
                               f"hf download {clip_ref}")]

    def load(self, device: str, dtype: torch.dtype) -> int:
        transformers = require("transformers", "transformers")
        head, clip = self.needs()
        file, folder, clip_ref = head.resolve(), clip.resolve(), clip.ref
        model = transformers.CLIPModel.from_pretrained(folder)  # only its vision tower and projection run
        self.head = load_head(file).to(device).float().eval()
        if self.head[0].in_features != model.config.projection_dim:
            raise UserError(f"{file.name} reads {self.head[0].in_features}-d embeddings but {clip_ref} makes "
                            f"{model.config.projection_dim}-d ones (the release pairs it with {CLIP_ID})")
        self.encoder = _clip.DualEncoder(model, None, device, dtype)
        return int(model.config.vision_config.image_size)

    def rewards(self, pixels: torch.Tensor, prompts: list[str]) -> list[float]:
        import torch

        assert self.encoder is not None
        embeds = self.encoder.images(pixels)
        with torch.inference_mode():
            return self.head(embeds.to(next(self.head.parameters()).device)).squeeze(-1).tolist()


@reward_model("laion-aesthetic", description="LAION aesthetic predictor v2: MLP on CLIP ViT-L/14 image embeddings "
              "(prompt not read)", extra="transformers", paper="arXiv 2210.08402")
def laion_aesthetic(path: str | None = None, clip: str | None = None, device: str = "auto", dtype: str = "float32",
                    batch_size: int = 32) -> RewardModel:
    _clip.check_options("laion-aesthetic", device, dtype, batch_size)
    for key, value in (("path", path), ("clip", clip)):
        if value is not None and not isinstance(value, str):
            raise UserError(f"laion-aesthetic: {key} must be a file, folder or hub id, got {value!r}")
    return LaionAesthetic(path=path, clip=clip, device=device, dtype=dtype, batch_size=batch_size)
