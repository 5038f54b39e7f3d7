"""What every diffusers generator shares: weights from local files only, ``-G`` settings checked against the
pipeline's own ``__call__``, one image per pipeline call, per-image failures, LoRA. See docs/generators.md.

Settings. A generator's factory names the common ``-G`` keys (``steps``, ``guidance``, ``width``, ``height``,
``negative_prompt``, and per family e.g. ``true_cfg_scale`` or ``max_area``) and passes any other key through to the
pipeline call, once it is checked against ``inspect.signature(<Pipeline>.__call__)``: a key the pipeline does not
take, or one rrbench sets per image (``prompt``, ``generator``, ``latents``, ...), is a one-line UserError when the
generator is built. ``settings()`` holds every call setting in effect, the pipeline's own defaults read from that
signature, so they follow the installed diffusers and run.json shows what an image was made with.

Determinism. Every image gets its own CPU ``torch.Generator`` seeded with its request's seed (noise made on the CPU
is the same whatever the device), and the pipeline is called with **one image per call**. Batched calls were
measured on this project's CPUs to change images in their low bits (up to 3e-6 before quantisation, a few 8-bit
values per 128² image), because kernels reduce in another order at another batch size (the timestep embedding is a
matrix-vector product at batch 1 and a matrix product above; batched convolutions tile differently), and no
deterministic flag removes that. So ``batch_size`` only groups requests per ``generate`` call, and an image depends
on its seed, prompt, source and settings alone.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import inspect
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rrbench.doctor import FileNeed
from rrbench.generators._base import Generated, Generator, ImageRequest
from rrbench.registry import require
from rrbench.types import DataError, FailureKind, UserError

if TYPE_CHECKING:
    import numpy as np
    import torch

# __call__ arguments rrbench sets itself for each image; a -G key may not name them.
PER_IMAGE = frozenset({
    "self", "prompt", "prompt_2", "prompt_3", "image", "generator", "latents", "num_images_per_prompt", "output_type",
    "return_dict", "prompt_embeds", "pooled_prompt_embeds", "prompt_embeds_mask", "negative_prompt_embeds",
    "negative_pooled_prompt_embeds", "negative_prompt_embeds_mask", "ip_adapter_image", "ip_adapter_image_embeds",
    "negative_ip_adapter_image", "negative_ip_adapter_image_embeds", "callback_on_step_end",
    "callback_on_step_end_tensor_inputs", "joint_attention_kwargs", "attention_kwargs",
})
# -G names of __call__ arguments (the rest keep diffusers' names)
RENAMED = {"num_inference_steps": "steps", "guidance_scale": "guidance"}
DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16", "fp32": "float32",
          "float32": "float32"}
ADAPTER = "rrbench"  # the adapter name a -G lora= is loaded under
LORA_FILES = ("adapter_config.json", "adapter_model.safetensors")  # a PEFT adapter folder, as trainers save it
SEEDING = "one CPU torch.Generator per image, seeded with the request seed; one image per pipeline call"


@dataclass(frozen=True)
class Options:
    """The ``-G`` keys every diffusers generator takes besides its pipeline's call settings."""

    path: str
    revision: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    cpu_offload: bool = False
    batch_size: int = 1
    lora: str | None = None
    lora_scale: float = 1.0

    def check(self, name: str) -> None:
        """One-line errors for ill-typed values, before anything is loaded."""
        if not isinstance(self.path, str) or not self.path:
            raise UserError(f"{name}: -G path must name a pipeline folder or hub id, got {self.path!r}")
        if self.revision is not None and not isinstance(self.revision, str):
            raise UserError(f"{name}: -G revision must be a branch, tag or commit, got {self.revision!r}")
        if not isinstance(self.dtype, str) or (self.dtype != "auto" and self.dtype not in DTYPES):
            raise UserError(f"{name}: -G dtype must be auto, bf16, fp16 or fp32, not {self.dtype!r}")
        if not isinstance(self.device, str) or not self.device:
            raise UserError(f"{name}: -G device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if not isinstance(self.cpu_offload, bool):
            raise UserError(f"{name}: -G cpu_offload must be true or false, got {self.cpu_offload!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise UserError(f"{name}: -G batch_size must be a positive integer, got {self.batch_size!r}")
        if self.lora is not None and (not isinstance(self.lora, str) or not self.lora):
            raise UserError(f"{name}: -G lora must name a LoRA file or a PEFT adapter folder, got {self.lora!r}")
        if isinstance(self.lora_scale, bool) or not isinstance(self.lora_scale, int | float):
            raise UserError(f"{name}: -G lora_scale must be a number, got {self.lora_scale!r}")


# ------------------------------------------------------------------------------------------------ files


@dataclass(frozen=True)
class GeneratorNeed(FileNeed):
    """A FileNeed named by a ``-G`` key: FileNeed words its errors for ``-M`` keys and knows no revision.

    ``hub``: the ref may be a hub id in the local Hugging Face cache (pipelines); a LoRA is a local path only.
    """

    revision: str | None = None
    hub: bool = True

    def _folder(self) -> Path:
        ref = self.ref or ""
        path = Path(ref).expanduser()
        if path.is_dir():
            return path.resolve()
        if self.file_ok and path.is_file():
            return path.resolve().parent
        if not self.hub or not _is_hub_id(ref):
            raise UserError(f"{self.name} not found: {ref} (-G {self.flag}=; {self.hint})")
        return _cached_snapshot(ref, self.revision, self.flag)

    @property
    def hint(self) -> str:
        return f"fetch it with `{self.fetch}`" if self.hub else self.fetch

    def resolve(self) -> Path:
        """The folder (or, with ``file_ok``, the file given); one line naming what is missing and the fix."""
        folder = self._folder()
        given = Path(self.ref or "").expanduser()
        if self.file_ok and given.is_file():
            return given.resolve()
        missing = [names for names in self.files if not any((folder / n).is_file() for n in names)]
        if missing:
            what = ", no ".join(" or ".join(names) for names in missing)
            raise UserError(f"{folder} has no {what} (-G {self.flag}=; {self.hint})")
        return folder


def _cached_snapshot(hub_id: str, revision: str | None, flag: str) -> Path:
    """The snapshot folder of a hub id in the local cache; never a download."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(hub_id, revision=revision, local_files_only=True))
    except Exception:  # huggingface_hub raises several kinds for "not cached"
        pinned = f" --revision {revision}" if revision else ""
        raise UserError(f"{hub_id} is not in the local Hugging Face cache; fetch it once with "
                        f"`hf download {hub_id}{pinned}` or pass -G {flag}=DIR") from None


def pipeline_need(path: str, revision: str | None, hub_id: str) -> GeneratorNeed:
    """The pipeline folder (``model_index.json`` + component folders): a local folder or a cached hub id."""
    pinned = f" --revision {revision}" if revision else ""
    fetch = f"hf download {path}{pinned}" if _is_hub_id(path) else f"hf download {hub_id}{pinned} --local-dir {path}"
    return GeneratorNeed("pipeline folder", path, "path", (("model_index.json",),), fetch, revision=revision)


def _is_hub_id(ref: str) -> bool:
    return ref.count("/") == 1 and not ref.startswith((".", "/", "~")) and not Path(ref).exists()


def lora_need(path: str) -> GeneratorNeed:
    return GeneratorNeed("LoRA", path, "lora", tuple((name,) for name in LORA_FILES),
                         "name a diffusers LoRA .safetensors file or a PEFT adapter folder", file_ok=True, hub=False)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ settings


@cache
def call_defaults(pipeline_class: str) -> dict[str, Any]:
    """The pipeline's own ``__call__`` defaults for every setting a ``-G`` key may name (diffusers' names)."""
    diffusers = require("diffusers", "diffusers")
    signature = inspect.signature(getattr(diffusers, pipeline_class).__call__)
    return {name: p.default for name, p in signature.parameters.items()
            if name not in PER_IMAGE and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def check_call(name: str, pipeline_class: str, given: Mapping[str, Any], renamed: Mapping[str, str]) -> dict[str, Any]:
    """``-G`` call settings (by -G name) as ``__call__`` keyword arguments; a key the pipeline does not take, or
    one rrbench sets per image, is a one-line UserError. None means: the pipeline's default."""
    defaults = call_defaults(pipeline_class)
    to_call = {g: c for c, g in renamed.items()}
    out: dict[str, Any] = {}
    for key, value in given.items():
        target = to_call.get(key, key)
        if key in renamed:
            raise UserError(f"generator '{name}': use -G {renamed[key]}= rather than -G {key}=")
        if key in PER_IMAGE:
            raise UserError(f"generator '{name}': -G {key} cannot be set; rrbench sets it for each image")
        if target not in defaults:
            shown = sorted(renamed.get(k, k) for k in defaults)
            raise UserError(f"generator '{name}' has no argument {key!r} (-G; {pipeline_class} takes: "
                            f"{', '.join(shown)}; and path, revision, dtype, device, cpu_offload, batch_size, lora, "
                            f"lora_scale)")
        if value is not None:
            _check_value(f"generator '{name}': -G {key}", value, LIKE.get(target, defaults[target]))
            out[target] = value
    return out


# Settings whose default is None in every pipeline, and what a value must be like when given.
LIKE: dict[str, Any] = {"width": 1, "height": 1, "negative_prompt": "", "negative_prompt_2": "",
                        "negative_prompt_3": ""}


def _check_value(what: str, value: Any, default: Any) -> None:
    """A value of the default's kind (a positive integer where diffusers' default is an integer, a number for a
    float, ...), and JSON, so it can be recorded: caught here once, not as the same error on every image."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be a JSON value, got {value!r}") from None
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{what} must be a positive integer, got {value!r}")
    elif isinstance(default, bool) and not isinstance(value, bool):
        raise UserError(f"{what} must be true or false, got {value!r}")
    elif isinstance(default, float) and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise UserError(f"{what} must be a number, got {value!r}")
    elif isinstance(default, str) and not isinstance(value, str):
        raise UserError(f"{what} must be text, got {value!r}")


# ------------------------------------------------------------------------------------------------ generator


class DiffusersGenerator(Generator):
    """A diffusers pipeline as a generator. Subclasses name the pipeline class and its default hub id."""

    pipeline_class: ClassVar[str]
    hub_id: ClassVar[str]
    renamed: ClassVar[Mapping[str, str]] = RENAMED

    def __init__(self, options: Options, call: Mapping[str, Any]) -> None:
        options.check(self.name)
        super().__init__(**asdict(options), **call)
        self.options = options
        self.batch_size = options.batch_size
        self.call = {**call_defaults(self.pipeline_class), **check_call(self.name, self.pipeline_class, call,
                                                                           self.renamed)}
        self.pipe: Any = None

    # -- identity -----------------------------------------------------------------------------------------
    def needs(self) -> list[FileNeed]:
        needs: list[FileNeed] = [self.folder_need]
        if self.options.lora is not None:
            needs.append(lora_need(self.options.lora))
        return needs

    @property
    def folder_need(self) -> GeneratorNeed:
        return pipeline_need(self.options.path, self.options.revision, self.hub_id)

    def settings(self) -> dict[str, Any]:
        diffusers = require("diffusers", "diffusers")
        out: dict[str, Any] = {"pipeline": self.pipeline_class, "diffusers": diffusers.__version__,
                               "weights": self.weights, "dtype": self.dtype_name, "device": self.device_name,
                               "cpu_offload": self.options.cpu_offload, "batch_size": self.options.batch_size,
                               "images_per_call": 1, "seeding": SEEDING}
        out.update({self.renamed.get(k, k): v for k, v in self.call.items()})
        if "true_cfg_scale" in self.call:  # diffusers runs true CFG only with a negative prompt
            out["true_cfg"] = bool(self.call["true_cfg_scale"] > 1 and self.call.get("negative_prompt") is not None)
        out["lora"] = self.lora_identity
        out["lora_scale"] = self.options.lora_scale
        return out

    @cached_property
    def weights(self) -> dict[str, Any]:
        """Local folder: its path. Hub id: the id and the cached snapshot's commit (None while not cached)."""
        path = Path(self.options.path).expanduser()
        if path.is_dir():
            return {"path": str(path.resolve())}
        folder = self.folder_need.locate()  # .../snapshots/<commit> in the cache
        commit = folder.name if folder is not None and folder.parent.name == "snapshots" else None
        return {"hub_id": self.options.path, "revision": commit or self.options.revision}

    @cached_property
    def lora_identity(self) -> dict[str, Any] | None:
        if self.options.lora is None:
            return None
        path = Path(self.options.lora).expanduser()
        if path.is_file():
            return {"path": str(path.resolve()), "format": "diffusers", "sha256": sha256_file(path)}
        if all((path / name).is_file() for name in LORA_FILES):
            return {"path": str(path.resolve()), "format": "peft", "sha256": sha256_file(path / LORA_FILES[1]),
                    "config_sha256": sha256_file(path / LORA_FILES[0])}
        return {"path": self.options.lora, "format": None, "sha256": None}  # missing: start() says so

    @property
    def device_name(self) -> str:
        if self.options.device != "auto":
            return self.options.device
        torch = require("torch", "diffusers")
        return "cuda" if torch.cuda.is_available() else "cpu"

    @property
    def dtype_name(self) -> str:
        if self.options.dtype == "auto":  # bf16 is what the released checkpoints run in; CPUs are slow at it
            return "bfloat16" if self.device_name.startswith("cuda") else "float32"
        return DTYPES[self.options.dtype]

    # -- life cycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.pipe is not None:
            return
        torch = require("torch", "diffusers")
        diffusers = require("diffusers", "diffusers")
        folder = self.folder_need.resolve()
        self._check_class(folder)
        self._check_device(torch)
        dtype = _dtype_argument(diffusers.__version__, getattr(torch, self.dtype_name))
        try:
            pipe = getattr(diffusers, self.pipeline_class).from_pretrained(folder, local_files_only=True, **dtype)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise UserError(f"cannot load {self.pipeline_class} from {folder}: {_first_line(exc)} "
                            f"({self.folder_need.hint})") from None
        pipe.set_progress_bar_config(disable=True)
        if self.options.lora is not None:
            load_lora(pipe, lora_need(self.options.lora).resolve(), self.options.lora_scale)
        if self.options.cpu_offload:
            pipe.enable_model_cpu_offload(device=self.device_name)
        else:
            pipe.to(self.device_name)
        self.pipe = pipe

    def _check_class(self, folder: Path) -> None:
        """diffusers loads another pipeline's folder with a warning and fails later, on every image."""
        try:
            found = json.loads((folder / "model_index.json").read_text()).get("_class_name")
        except (OSError, ValueError, AttributeError):
            raise UserError(f"{folder / 'model_index.json'} is not a diffusers pipeline index "
                            f"({self.folder_need.hint})") from None
        if found != self.pipeline_class:
            raise UserError(f"{folder} holds a {found} pipeline; generator '{self.name}' needs a "
                            f"{self.pipeline_class} folder (-G path=), such as {self.hub_id}'s")

    def _check_device(self, torch: Any) -> None:
        on_gpu = self.device_name.startswith("cuda")
        if on_gpu and not torch.cuda.is_available():
            raise UserError(f"generator '{self.name}': -G device={self.device_name}, and torch sees no GPU")
        if self.options.cpu_offload and not on_gpu:
            raise UserError(f"generator '{self.name}': -G cpu_offload=true needs a GPU (device is {self.device_name})")

    def close(self) -> None:
        self.pipe = None
        _free_memory()

    def generate(self, requests: Sequence[ImageRequest]) -> list[Generated]:
        self.start()
        return [self._one(request) for request in requests]

    def _one(self, request: ImageRequest) -> Generated:
        """One pipeline call for one image; whatever goes wrong is this image's failure alone."""
        torch = require("torch", "diffusers")
        try:
            inputs = self.inputs(request)
        except DataError as exc:
            return Generated.failed(FailureKind.DATA, str(exc))
        generator = torch.Generator("cpu").manual_seed(request.seed)
        try:
            images = self.pipe(**inputs, generator=[generator], num_images_per_prompt=1, output_type="np").images
        except Exception as exc:  # one bad request must not stop the others
            if _out_of_memory(exc):
                _free_memory()  # so the next image starts from a clean allocator
                return Generated.failed(FailureKind.OOM, f"out of memory: {_first_line(exc)}")
            return Generated.failed(FailureKind.ERROR, f"{type(exc).__name__}: {exc}")
        return checked(images[0])

    def inputs(self, request: ImageRequest) -> dict[str, Any]:
        """The pipeline call for one request (without its generator); editing generators add the source."""
        return {**self.call, "prompt": request.prompt}


class DiffusersEditGenerator(DiffusersGenerator):
    """An editing pipeline: the request's first source image is the image to edit."""

    kinds = ("edit",)

    def inputs(self, request: ImageRequest) -> dict[str, Any]:
        return {**super().inputs(request), "image": self.source(request)}

    def source(self, request: ImageRequest) -> Any:
        if not request.source:
            raise DataError(f"generator '{self.name}' edits an image, and sample {request.sample_id} has none")
        return request.source[0].image()


# ------------------------------------------------------------------------------------------------ images


def checked(image: np.ndarray) -> Generated:
    """A pipeline's float image in [0, 1] as PNG, quantised as diffusers' ``numpy_to_pil`` does; NaN, inf or an
    all-black image (an fp16 overflow, a safety filter) is an invalid image, never a stored one."""
    import numpy as np
    from PIL import Image

    if not np.isfinite(image).all():
        bad = int((~np.isfinite(image)).sum())
        return Generated.failed(FailureKind.INVALID_IMAGE, f"the pipeline returned {bad} NaN or inf values "
                                                           f"of {image.size}")
    pixels = (image * 255).round().astype("uint8")
    if not pixels.any():
        return Generated.failed(FailureKind.INVALID_IMAGE, "the pipeline returned an all-black image")
    return Generated.from_image(Image.fromarray(pixels))


def _dtype_argument(version: str, dtype: torch.dtype) -> dict[str, Any]:
    """diffusers 0.40 renamed ``torch_dtype`` to ``dtype`` (the old name warns); rrbench supports both sides."""
    major, minor = (int(part) for part in version.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (0, 40) else {"torch_dtype": dtype}


def _out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    oom = getattr(require("torch", "diffusers"), "OutOfMemoryError", ())
    return isinstance(exc, oom) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def _free_memory() -> None:
    gc.collect()
    torch = require("torch", "diffusers")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


# ------------------------------------------------------------------------------------------------ LoRA


def load_lora(pipe: Any, path: Path, scale: float) -> None:
    """A diffusers LoRA file (``save_lora_weights``, kohya and other formats diffusers converts) or a PEFT adapter
    folder, loaded as adapter ``rrbench`` at ``scale``. A LoRA that loads nowhere, or whose keys do not all match
    a module, is a UserError: diffusers only logs a warning for both."""
    kind = type(pipe).__name__
    with _held_diffusers_log() as records:
        try:
            if path.is_dir():
                _load_peft_folder(pipe, path)
            else:
                pipe.load_lora_weights(_lora_state_dict(path), adapter_name=ADAPTER)
        except (ValueError, RuntimeError, TypeError, KeyError) as exc:
            raise UserError(f"LoRA {path} does not fit this {kind}: {_first_line(exc)}") from None
        unmatched = [r.getMessage() for r in records if "unexpected keys" in r.getMessage()
                     or "missing keys" in r.getMessage()]
        if unmatched:
            raise UserError(f"LoRA {path} does not fit this {kind}: {' '.join(unmatched[0].split())[:300]}")
        if not any(ADAPTER in names for names in pipe.get_list_adapters().values()):
            raise UserError(f"LoRA {path} matches no module of this {kind} (made for another model?)")
    pipe.set_adapters([ADAPTER], adapter_weights=[scale])


def _lora_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a LoRA file; a file that is not safetensors, or holds no LoRA weights, is a UserError."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for a file that is not one
        raise UserError(f"LoRA {path} is not a safetensors file ({_first_line(exc)})") from None
    if not any("lora" in key for key in state):
        raise UserError(f"{path} is not a LoRA: none of its {len(state)} tensors is a lora_A/lora_B/lora_down "
                        "weight")
    return state


def _load_peft_folder(pipe: Any, folder: Path) -> None:
    """A PEFT adapter folder for the denoiser (``get_peft_model(transformer).save_pretrained``): its keys lose
    PEFT's ``base_model.model.`` prefix and its ``adapter_config.json`` becomes diffusers' LoRA config, so rank,
    alpha and targets are the trainer's own."""
    config = json.loads((folder / LORA_FILES[0]).read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise UserError(f"{folder} holds a {config.get('peft_type')} adapter; only LoRA adapters are supported")
    state = _lora_state_dict(folder / LORA_FILES[1])
    state = {key.removeprefix("base_model.model."): value for key, value in state.items()}
    config = {key: value for key, value in config.items() if key not in ("peft_type", "auto_mapping")}
    pipe.transformer.load_lora_adapter(state, prefix=None, adapter_name=ADAPTER, metadata=config)


@contextlib.contextmanager
def _held_diffusers_log() -> Iterator[list[logging.LogRecord]]:
    """Hold back what diffusers logs inside the block, for the caller to read: its LoRA loader reports keys that
    matched nothing only as warnings. After a clean exit the records are logged as usual, less the expected "No
    LoRA keys associated to <component>" (a transformer LoRA has none for the text encoders); after an error they
    are dropped, the UserError says it in one line."""
    records: list[logging.LogRecord] = []

    class Hold(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("diffusers")
    handlers, level = logger.handlers[:], logger.level
    logger.handlers = [Hold()]
    logger.setLevel(min(level or logging.WARNING, logging.WARNING))
    try:
        yield records
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)
    for record in records:  # reached only without an exception
        if "No LoRA keys associated" not in record.getMessage():
            logger.handle(record)
