"""The RationalRewards critic gets exactly the input its authors' code gives it (issue 12).

Each fixture in ``fixtures/rationalrewards_prompts/`` holds the messages one of the authors' builders produces for a
fixed request (roles, verbatim text parts, labelled image slots), written from a reading of the upstream file and
lines it cites, never from rrbench's renderer. rrbench renders the same request from its catalogue, and both go
through the Qwen3-VL chat template of the tiny checkpoint, as a server would: the strings must agree byte for byte.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from rrbench import prompts
from rrbench.types import Media, UserError

FIXTURES = Path(__file__).parent / "fixtures" / "rationalrewards_prompts"
CASES = sorted(FIXTURES.glob("*.json"))
FAMILIES = ("rationalrewards", "rationalrewards-legacy", "rationalrewards-refine-v0")
# Image labels used by the fixtures -> the scikit-image photograph standing in for that image.
PHOTOS = {"source-1": "astronaut", "source-2": "coffee", "A": "chelsea", "B": "rocket", "image": "camera"}


def _png(name: str) -> bytes:
    import skimage.data
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(getattr(skimage.data, name)()).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def photos() -> dict[str, Media]:
    pytest.importorskip("skimage", reason="real photographs come from scikit-image")
    return {label: Media.from_bytes(_png(name)) for label, name in PHOTOS.items()}


@pytest.fixture(scope="module")
def processor(tiny_vlm: Path) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_vlm)


def _load(case: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(case.read_text(encoding="utf-8"))
    return record


def _render_ours(record: Mapping[str, Any], photos: Mapping[str, Media]) -> list[dict[str, Any]]:
    spec = prompts.select(record["family"], record["kind"], record["generation"])
    # The fixture names the catalogue entry it was read for: a default that moved would be caught here.
    assert spec.key == record["prompt"]
    candidates = [photos[label] for label in record["candidates"]]
    sources = [photos[label] for label in record["sources"]]
    return spec.render(record["request"], candidates, sources)


def _labelled(messages: Sequence[Mapping[str, Any]], photos: Mapping[str, Media]) -> list[dict[str, Any]]:
    """rrbench's messages with each image replaced by its fixture label, so slot order and identity are compared."""
    label_of = {media.sha256: label for label, media in photos.items()}
    out = []
    for message in messages:
        content = message["content"]
        if not isinstance(content, str):
            content = [{"type": "image", "image": label_of[part["media"].sha256]} if part["type"] == "image"
                       else {"type": "text", "text": part["text"]} for part in content]
        out.append({"role": message["role"], "content": content})
    return out


def _chat_text(processor: Any, messages: Sequence[Mapping[str, Any]]) -> str:
    """The prompt string a server builds: every image part (rrbench's or a fixture's label) becomes the template's
    image placeholder; text parts and string contents pass unchanged."""
    hf = []
    for message in messages:
        content = message["content"]
        if not isinstance(content, str):
            content = [{"type": "image"} if part["type"] == "image" else {"type": "text", "text": part["text"]}
                       for part in content]
        hf.append({"role": message["role"], "content": content})
    text: str = processor.apply_chat_template(hf, tokenize=False, add_generation_prompt=True)
    return text


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_messages_match_the_authors_builder(case: Path, photos: dict[str, Media]) -> None:
    record = _load(case)
    assert _labelled(_render_ours(record, photos), photos) == record["messages"]


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_chat_template_text_is_byte_identical(case: Path, photos: dict[str, Media], processor: Any) -> None:
    record = _load(case)
    ours = _chat_text(processor, _render_ours(record, photos))
    theirs = _chat_text(processor, record["messages"])
    assert ours.encode("utf-8") == theirs.encode("utf-8")
    # Guard against a vacuous pass: the request and one placeholder per image really are in the prompt.
    assert record["request"] in ours
    assert ours.count("<|image_pad|>") == len(record["sources"]) + len(record["candidates"])
    assert ours.startswith("<|im_start|>system\n") == (record["messages"][0]["role"] == "system")


def test_fixtures_cover_every_kind_generation_and_source_count() -> None:
    seen = {(r["family"], r["kind"], r["generation"], len(r["sources"])) for r in map(_load, CASES)}
    for kind in ("pairwise", "pointwise"):
        assert ("rationalrewards", kind, "t2i", 0) in seen
        assert ("rationalrewards", kind, "edit", 1) in seen
        assert ("rationalrewards", kind, "edit", 2) in seen
    for record in map(_load, CASES):
        read = record["upstream"]["read"]
        assert re.fullmatch("[0-9a-f]{40}", record["upstream"]["commit"])
        assert all(re.fullmatch(r"\d+-\d+(, \d+-\d+)*", r["lines"]) for r in read if "path" in r), record["prompt"]


def test_default_pointwise_prompts_are_the_released_ones() -> None:
    for generation in ("t2i", "edit"):
        spec = prompts.select("rationalrewards", "pointwise", generation)
        assert (spec.key, spec.answer) == (f"rationalrewards/pointwise-{generation}@released-1", "critique")
        assert spec.system is not None and spec.system.startswith("You are an expert image")
        assert spec.source["path"] == "README.md"


def test_every_prompt_records_where_it_comes_from() -> None:
    for key, spec in prompts.catalogue().items():
        source = spec.source
        assert source.get("repo") and source.get("path") and source.get("licence"), key
        if spec.builder is not None:
            # rrbench's own prompts live in this repository: the run record's git commit pins them.
            assert source["repo"] == "rrbench", key
            continue
        assert re.fullmatch("[0-9a-f]{40}", str(source.get("commit", ""))), key
        if spec.family in FAMILIES:
            assert source.get("lines") and source.get("assembly"), key


def _template_text(spec: prompts.PromptSpec) -> str:
    """The stored user template, read straight from the package data (not through the renderer)."""
    folder = resources.files("rrbench.prompts").joinpath("data", spec.family)
    pieces = [s["text"] if "text" in s else folder.joinpath(s["file"]).read_text(encoding="utf-8") for s in spec.user]
    return "".join(pieces)


@pytest.mark.parametrize("key", sorted(k for k, s in prompts.catalogue().items()
                                       if "@" in k and s.family in FAMILIES))
def test_templates_round_trip(key: str, photos: dict[str, Media]) -> None:
    spec = prompts.get(key)
    request = 'turn the "sky" {orange} & keep café signs'
    sources = [photos["source-1"], photos["source-2"]] if spec.generation == "edit" else []
    candidates = [photos["A"], photos["B"]] if spec.kind == "pairwise" else [photos["image"]]
    messages = spec.render(request, candidates, sources)
    parts = messages[-1]["content"]
    template = _template_text(spec)
    (marker,) = spec.variables
    expected = template.replace(marker, request)
    for image_marker in spec.images:
        expected = expected.replace(image_marker, "")
    assert "".join(p["text"] for p in parts if p["type"] == "text") == expected
    assert sum(p["type"] == "image" for p in parts) == len(sources) + len(candidates)
    assert template.count(marker) == 1  # the request appears once, as in the authors' str.format / f-string
    if spec.system is not None:
        assert messages[0] == {"role": "system", "content": spec.system}


def test_a_request_cannot_open_an_image_slot(photos: dict[str, Media]) -> None:
    # The authors format first and split at <image> afterwards; rrbench splits the template only, so a request
    # that happens to contain the marker stays text instead of shifting every image one slot along.
    spec = prompts.select("rationalrewards", "pointwise", "t2i")
    messages = spec.render("a poster saying <image>", [photos["image"]], [])
    parts = messages[-1]["content"]
    assert sum(p["type"] == "image" for p in parts) == 1
    assert "a poster saying <image>" in "".join(p["text"] for p in parts if p["type"] == "text")


@pytest.mark.parametrize(("call", "words"), [
    (lambda: prompts.select("rationalrewards-nope", "pointwise", "t2i"), "unknown prompt family"),
    (lambda: prompts.select("rationalrewards", "ranking", "t2i"), "no ranking prompt"),
    (lambda: prompts.select("rationalrewards-refine-v0", "pointwise", "t2i"), "no pointwise prompt for t2i"),
    (lambda: prompts.get("rationalrewards/pointwise-t2i@released-0"), "unknown prompt"),
])
def test_unknown_family_or_kind_is_a_one_line_user_error(call: Any, words: str) -> None:
    with pytest.raises(UserError) as err:
        call()
    message = str(err.value)
    assert words in message and "\n" not in message
