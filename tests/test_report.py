"""`rrbench report`: the page of a real run shows what run.json and samples.jsonl say, offline and escaped.

Runs are made by `rrbench.cli.main` with the critic-shaped `toy-critic` (tests/plugins/critic_models.py) and the
pointwise `classical-iqa` on small `sanity` images; a tiny folder task below reads image files from `--data`, so
missing folders, changed files and corrupt images are real files, not mocks. The browser test drives Debian's
chromium through playwright (no browser download) and skips, saying why, where there is none.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from rrbench import cli
from rrbench.display import ci, pct
from rrbench.registry import get, task
from rrbench.types import Label, Media, Protocol, Sample, Task, TaskKind, UserError


@pytest.fixture(autouse=True, scope="module")
def _toy_critic() -> None:
    """Import the plug-in unless RRBENCH_PLUGINS (another test in this process) already registered it."""
    try:
        get("model", "toy-critic")
    except UserError:
        importlib.import_module("tests.plugins.critic_models")

CRITIC = ["--model", "toy-critic", "-M", "bias=1", "-M", "fail=0.1", "--order", "both"]
CLEAN = ["--model", "toy-critic"]  # no injected failures: the only failure is the data's
XSS = 'a <script>alert(1)</script> b </script><!-- c --> "d" \'e\' &amp;'


# --------------------------------------------------------------------------------------------------- a folder task


@task("report-test-folder", description="test task: image pairs listed in pairs.json of a --data folder")
def report_test_folder() -> Task:
    def load(data: Path | None) -> Iterator[Sample]:
        if data is None:
            raise UserError("report-test-folder needs --data")
        for row in json.loads((data / "pairs.json").read_text()):
            candidates = (Media.from_path(data / row["a"]), Media.from_path(data / row["b"]))
            label = Label.win(row["winner"], original="AB"[row["winner"]])
            yield Sample(row["id"], row["prompt"], candidates, label, meta={"category": row["category"]})

    return Task(name="report-test-folder", version="1", kind=TaskKind.PAIR, load=load,
                protocol=Protocol(id="folder-exact"))


def make_folder(root: Path, n: int = 4) -> Path:
    """Image files and pairs.json written from real sanity pairs (scikit-image photographs, 64 px)."""
    root.mkdir(parents=True)
    rows = []
    for sample in get("task", "sanity").build(n=n, size=64).load(None):
        names = []
        for i, media in enumerate(sample.candidates):
            name = f"{sample.id}-{i}.{media.format}"
            (root / name).write_bytes(media.read_bytes())
            names.append(name)
        rows.append({"id": sample.id, "prompt": sample.prompt, "a": names[0], "b": names[1],
                     "winner": sample.label.winner, "category": sample.category})
    (root / "pairs.json").write_text(json.dumps(rows))
    return root


# --------------------------------------------------------------------------------------------------- helpers


def run(out: Path, *args: str) -> Path:
    before = {p.name for p in out.iterdir()} if out.exists() else set()
    code = cli.main(["run", *args, "--output", str(out), "--quiet", "--no-cache"])
    assert code == 0
    (new,) = [p for p in out.iterdir() if p.name not in before and (p / "run.json").exists()]
    return new


def report(run_dir: Path, *args: str, out: Path | None = None) -> Path:
    """The default RUN_DIR/report.html, or ``out`` (pages with options, so shared pages stay as they are)."""
    assert cli.main(["report", str(run_dir), *args, *(["--out", str(out)] if out else [])]) == 0
    return out or run_dir / "report.html"


def copy_run(run_dir: Path, dest: Path) -> Path:
    shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns("report.html", ".lock"))
    return dest


def log_lines(run_dir: Path) -> list[dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for line in (run_dir / "samples.jsonl").read_text().splitlines():
        obj = json.loads(line)
        latest[obj["id"]] = obj
    return list(latest.values())


def expected_state(line: dict[str, Any]) -> str:
    """The documented rule, written again from the log's own fields."""
    if line.get("skipped"):
        return "skipped"
    if line.get("failure"):
        return "failed"
    credits = [c for c in line["correct"] if c is not None]
    if not credits:
        return "unscored"
    mean = sum(credits) / len(credits)
    return "correct" if mean == 1 else "wrong" if mean == 0 else "mixed"


def search_text(line: dict[str, Any]) -> str:
    rationales = [j.get("rationale") or "" for t in line["trials"] for j in t["judgements"]]
    return "\n".join([line["id"], line["prompt"] or "", *rationales]).lower()


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None]) -> None:
        self.tag, self.attrs = tag, attrs
        self.children: list[Node | str] = []

    @property
    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def all(self, pred: Callable[[Node], bool]) -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if pred(child):
                    found.append(child)
                found += child.all(pred)
        return found

    def by_class(self, cls: str, tag: str | None = None) -> list[Node]:
        return self.all(lambda n: cls in n.classes and (tag is None or n.tag == tag))


VOID = frozenset({"meta", "img", "input", "br", "hr", "link", "source"})  # elements without an end tag


class Tree(HTMLParser):
    """A minimal DOM of the page, enough to read it as a browser would without one."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.root = Node("#root", {})
        self.stack = [self.root]
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        while len(self.stack) > 1:
            if self.stack.pop().tag == tag:
                break

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(path: Path) -> Node:
    return Tree(path.read_text()).root


def cards(page: Node) -> list[Node]:
    return page.all(lambda n: n.tag == "article" and "card" in n.classes)


def embedded_record(page: Node) -> Any:
    (script,) = page.all(lambda n: n.tag == "script" and n.attrs.get("id") == "run-record")
    return json.loads(script.text())


# --------------------------------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("report-runs")
    return {
        "t2i": run(out, "--task", "sanity", *CRITIC, "-T", "n=24", "-T", "size=64"),
        "edit": run(out, "--task", "sanity", *CRITIC, "-T", "n=12", "-T", "size=64", "-T", "variant=edit"),
        "pointwise": run(out, "--task", "sanity", "--model", "classical-iqa", "-T", "n=6", "-T", "size=64"),
    }


@pytest.fixture(scope="module")
def t2i_page(runs: dict[str, Path]) -> Path:
    return report(runs["t2i"])


# --------------------------------------------------------------------------------------------------- content


def test_metrics_tables_and_embedded_record_equal_run_json(runs: dict[str, Path], t2i_page: Path) -> None:
    record = json.loads((runs["t2i"] / "run.json").read_text())
    page = parse(t2i_page)
    rows = page.by_class("metric", "tr")
    assert len(rows) == len(record["metrics"]["overall"]) == 2
    for m, row in zip(record["metrics"]["overall"], rows, strict=True):
        assert (row.attrs["data-metric"], row.attrs["data-failure-policy"]) == (m["metric"], m["failure_policy"])
        assert row.by_class("value")[0].text() == pct(m["value"])
        assert row.by_class("ci")[0].text() == ci(m)
        # n counts samples; the units (trials, comparisons, groups) follow when they differ
        units = "" if m["n_units"] == m["n_samples"] else f" ({m['n_units']} {m['unit']}s)"
        assert row.by_class("n")[0].text() == f"{m['n_samples']}{units}"
    by_category = record["metrics"]["by_category"]
    category_rows = page.by_class("category-row", "tr")
    assert {r.attrs["data-category"] for r in category_rows} == set(by_category)
    for row in category_rows:
        values = [v.text() for v in row.by_class("value")]
        policies = {m["failure_policy"]: m for m in by_category[row.attrs["data-category"]]}
        assert values == [pct(policies["excluded"]["value"]), pct(policies["wrong"]["value"])]
    counts = record["counts"]
    coverage = page.by_class("coverage")[0]
    assert coverage.by_class("recorded")[0].text() == f"{counts['recorded']} of {counts['expected']} expected"
    assert coverage.by_class("failed")[0].text() == f"{counts['failed']} (parse {counts['failed_by_kind']['parse']})"
    assert embedded_record(page) == record
    summary = page.by_class("protocol", "dd")[0].text()
    assert "order both" in summary and "mode pairwise" in summary and "ties exact" in summary


def test_hand_edited_numbers_are_shown_as_the_log_gives_them(runs: dict[str, Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    edited = copy_run(runs["t2i"], tmp_path / "edited")
    record = json.loads((edited / "run.json").read_text())
    truth = record["metrics"]["overall"][0]["value"]
    record["metrics"]["overall"][0]["value"] = 0.999  # someone "improves" the number by hand, without the seal
    record["counts"]["failed"] = 0
    (edited / "run.json").write_text(json.dumps(record))
    page = parse(report(edited))
    assert page.by_class("metric", "tr")[0].by_class("value")[0].text() == pct(truth)
    original = json.loads((runs["t2i"] / "run.json").read_text())
    assert embedded_record(page)["counts"]["failed"] == original["counts"]["failed"]
    assert "do not match samples.jsonl" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["t2i", "edit", "pointwise"])
def test_every_card_shows_its_log_line(runs: dict[str, Path], name: str) -> None:
    lines = log_lines(runs[name])
    page = parse(report(runs[name]))
    by_id = {c.attrs["data-id"]: c for c in cards(page)}
    assert set(by_id) == {line["id"] for line in lines} and len(cards(page)) == len(lines)
    assert not page.by_class("banner")
    for line in lines:
        card = by_id[line["id"]]
        assert card.attrs["data-status"] == expected_state(line)
        assert card.attrs["data-category"] == line["meta"]["category"]
        assert card.by_class("prompt")[0].text() == line["prompt"]
        assert len(card.by_class("thumb", "img")) == len(line["candidates"]) + len(line["source"])
        assert [f.text()[0] for f in card.by_class("candidate", "figure")] == ["A", "B"][: len(line["candidates"])]
        assert len(card.by_class("trials")[0].all(lambda n: n.tag == "tr")) == 1 + len(line["trials"])
        rationales = [j["rationale"] for t in line["trials"] for j in t["judgements"] if j.get("rationale")]
        shown = " ".join(r.text() for r in card.by_class("rationale"))
        assert all(r in shown for r in rationales)
        original = card.by_class("original")
        assert original and original[0].text() == line["label"]["original"]
        if line.get("failure"):
            detail = next(j["failure_detail"] for t in line["trials"] for j in t["judgements"] if j.get("failure"))
            assert detail in card.by_class("trials")[0].text()


def test_states_include_mixed_and_failed_and_aspects_show_na(runs: dict[str, Path], t2i_page: Path) -> None:
    states = {expected_state(line) for line in log_lines(runs["t2i"])}
    assert {"correct", "wrong", "mixed", "failed"} <= states  # bias=1 in both orders makes mixed credit
    card = cards(parse(t2i_page))[0]
    aspects = card.by_class("aspects")[0]
    rendering = aspects.all(lambda n: n.tag == "tr" and n.text().startswith("Text Rendering"))[0]
    assert rendering.text().count("N/A") == 2
    assert "Sharp focus" in card.by_class("refined")[0].text()


def test_pointwise_aspects_map_back_to_the_sample_order(runs: dict[str, Path]) -> None:
    line = log_lines(runs["pointwise"])[0]
    card = cards(parse(report(runs["pointwise"])))[0]
    (trial,) = line["trials"]
    row = card.by_class("aspects")[0].all(lambda n: n.tag == "tr" and n.text().startswith("sharpness"))[0]
    cells = [c.text() for c in row.all(lambda n: n.tag == "td")][1:]
    expected = [0.0, 0.0]
    for pos, original in enumerate(trial["order"]):
        expected[original] = trial["judgements"][pos]["aspects"][0]["sharpness"]
    assert cells == [f"{v:.4g}" for v in expected]


def test_source_image_and_thumbnail_size(runs: dict[str, Path], tmp_path: Path) -> None:
    page = parse(report(runs["edit"], "--thumb", "32", out=tmp_path / "small.html"))
    for card in cards(page):
        assert len(card.by_class("source", "figure")) == 1
        sizes = {(int(i.attrs["width"] or 0), int(i.attrs["height"] or 0)) for i in card.by_class("thumb", "img")}
        assert sizes == {(32, 32)}


def test_nothing_external_and_a_strict_content_security_policy(t2i_page: Path) -> None:
    text = t2i_page.read_text()
    links = re.findall(r"""\b(?:src|href|action|poster|data)\s*=\s*["']?([^"'\s>]+)""", text, flags=re.I)
    assert links and all(link.startswith("data:image/jpeg;base64,") for link in links)
    assert not re.search(r"url\(|@import|https?://", text)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text)
    assert csp and "default-src 'none'" in csp.group(1) and "img-src data:" in csp.group(1)


def test_text_and_json_are_escaped(runs: dict[str, Path], tmp_path: Path) -> None:
    run_dir = copy_run(runs["t2i"], tmp_path / "xss")
    lines = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    lines[0]["prompt"] = XSS
    lines[0]["meta"]["category"] = XSS
    lines[0]["trials"][0]["judgements"][0]["rationale"] = XSS
    lines[1]["trials"][0]["judgements"][0]["raw"] = "a lone surrogate \ud800 from a model"  # JSON allows it
    (run_dir / "samples.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    record = json.loads((run_dir / "run.json").read_text())
    record["model"]["config"]["note"] = XSS
    (run_dir / "run.json").write_text(json.dumps(record))
    out = report(run_dir)
    text = out.read_text()
    assert "<script>alert" not in text and "<!-- c -->" not in text
    assert text.count("<script") == 2 and text.count("</script>") == 2  # the record and the page script
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    page = parse(out)
    card = next(c for c in cards(page) if c.attrs["data-id"] == lines[0]["id"])
    assert card.by_class("prompt")[0].text() == XSS and card.attrs["data-category"] == XSS
    assert XSS in card.by_class("rationale")[0].text()
    embedded = embedded_record(page)
    recomputed = ("metrics", "counts", "integrity")  # the log was edited, so the page counts from it
    assert {k: v for k, v in embedded.items() if k not in recomputed} == {
        k: v for k, v in record.items() if k not in recomputed}
    assert XSS in embedded["metrics"]["by_category"]  # the edited category, read back through the JSON


def test_limit_caps_the_cards(runs: dict[str, Path], tmp_path: Path) -> None:
    page = parse(report(runs["t2i"], "--limit", "5", out=tmp_path / "five.html"))
    assert len(cards(page)) == 5 and "cards for 5 of the log's 24 samples" in page.text()
    assert page.by_class("metric", "tr")  # the metrics are whole whatever the limit
    assert not cards(parse(report(runs["t2i"], "--limit", "0", out=tmp_path / "none.html")))


def test_out_file_and_out_folder(runs: dict[str, Path], tmp_path: Path) -> None:
    assert cli.main(["report", str(runs["edit"]), "--out", str(tmp_path / "sub" / "edit.html")]) == 0
    assert (tmp_path / "sub" / "edit.html").stat().st_size > 0
    assert cli.main(["report", str(runs["edit"]), "--out", str(tmp_path / "sub")]) == 0
    assert (tmp_path / "sub" / f"{runs['edit'].name}.html").exists()
    assert not list((tmp_path / "sub").glob(".*.tmp"))


# --------------------------------------------------------------------------------------------------- images missing


def only_placeholders(page: Node, n_cards: int) -> None:
    assert len(cards(page)) == n_cards
    assert not page.by_class("thumb", "img")
    assert all(len(c.by_class("placeholder")) == 2 for c in cards(page))


def test_unknown_task_plugin_gives_placeholders_and_a_banner(runs: dict[str, Path], tmp_path: Path) -> None:
    run_dir = copy_run(runs["t2i"], tmp_path / "unknown")
    record = json.loads((run_dir / "run.json").read_text())
    record["spec"]["task"] = "no-such-task"
    (run_dir / "run.json").write_text(json.dumps(record))
    page = parse(report(run_dir))
    (banner,) = page.by_class("banner")
    assert banner.text().startswith("images unavailable: unknown task 'no-such-task'")
    only_placeholders(page, 24)
    assert len(page.by_class("metric", "tr")) == 2


def test_missing_data_folder_then_data_flag(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "pairs")
    run_dir = run(tmp_path / "runs", "--task", "report-test-folder", "--data", str(folder), *CLEAN)
    assert not parse(report(run_dir)).by_class("placeholder")
    moved = folder.rename(tmp_path / "moved")
    page = parse(report(run_dir))
    (banner,) = page.by_class("banner")
    assert "does not exist" in banner.text() and str(folder) in banner.text()
    only_placeholders(page, 4)
    page = parse(report(run_dir, "--data", str(moved)))
    assert not page.by_class("banner") and len(page.by_class("thumb", "img")) == 8


def test_data_that_fails_midway_keeps_the_images_read_before(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "pairs")
    run_dir = run(tmp_path / "runs", "--task", "report-test-folder", "--data", str(folder), *CLEAN)
    rows = json.loads((folder / "pairs.json").read_text())
    del rows[2]["prompt"]  # the reader raises on the third row, after two samples
    (folder / "pairs.json").write_text(json.dumps(rows))
    page = parse(report(run_dir))
    (banner,) = page.by_class("banner")
    assert banner.text() == "images unavailable after 2 samples of the data: KeyError: 'prompt'"
    assert [len(c.by_class("thumb", "img")) for c in cards(page)] == [2, 2, 0, 0]


def test_changed_and_corrupt_images_get_placeholders(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "pairs")
    rows = json.loads((folder / "pairs.json").read_text())
    (folder / rows[0]["a"]).write_bytes(b"\x89PNG\r\n\x1a\n not an image at all")
    run_dir = run(tmp_path / "runs", "--task", "report-test-folder", "--data", str(folder), *CLEAN)
    shutil.copy(folder / rows[2]["a"], folder / rows[1]["b"])  # other bytes than the run judged
    page = parse(report(run_dir))
    by_id = {c.attrs["data-id"]: c for c in cards(page)}
    corrupt = by_id[rows[0]["id"]]
    assert corrupt.attrs["data-status"] == "failed" and "data" in corrupt.by_class("failure")[0].text()
    (placeholder,) = corrupt.by_class("placeholder")
    assert "corrupt image" in placeholder.text() and len(corrupt.by_class("thumb", "img")) == 1
    (changed,) = by_id[rows[1]["id"]].by_class("placeholder")
    assert "key mismatch" in changed.text()
    assert not by_id[rows[2]["id"]].by_class("placeholder") and not page.by_class("banner")


def test_log_samples_missing_from_the_data_are_listed_last(runs: dict[str, Path], tmp_path: Path) -> None:
    run_dir = copy_run(runs["t2i"], tmp_path / "renamed")
    lines = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    lines[0]["id"] = "not-in-the-data"
    (run_dir / "samples.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    page = parse(report(run_dir))
    assert cards(page)[-1].attrs["data-id"] == "not-in-the-data"
    assert len(cards(page)[-1].by_class("placeholder")) == 2
    assert "1 sample(s) of the log are not in the task's data" in page.by_class("banner")[0].text()


def test_not_a_run_directory_and_bad_options_are_one_line_errors(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"rrbench: error: not a run directory (no run.json): {tmp_path}"
    assert cli.main(["report", str(runs["t2i"]), "--thumb", "4"]) == 2
    assert "--thumb" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------- browser


def chromium() -> str:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("no chromium executable on PATH (Debian package chromium); .ci/run installs it")
    return exe


def test_page_in_headless_chromium(runs: dict[str, Path], t2i_page: Path, tmp_path: Path) -> None:
    exe = chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the test extra)")
    lines = log_lines(runs["t2i"])
    states = [expected_state(line) for line in lines]
    url = t2i_page.resolve().as_uri()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        requests: list[str] = []
        errors: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: errors.append(f"dialog {d.message}"))
        start = time.perf_counter()
        page.goto(url)
        page.wait_for_load_state("load")
        print(f"page load: {time.perf_counter() - start:.2f} s")
        images = page.eval_on_selector_all("img.thumb", "els => els.map(e => [e.complete, e.naturalWidth])")
        assert len(images) == 2 * len(lines) and all(done and width > 0 for done, width in images)
        rationale = page.locator("article.card .rationale").first
        assert rationale.is_visible() and "Preferred" in rationale.inner_text()
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True, clip={"x": 0, "y": 0, "width": 1200, "height": 2400})
        print(f"screenshot: {shot}")

        def visible() -> list[tuple[str, str]]:
            return [(c.get_attribute("data-id") or "", c.get_attribute("data-status") or "")
                    for c in page.locator("article.card:visible").all()]

        page.click("button[data-status-filter=wrong]")
        wrong = visible()
        assert len(wrong) == states.count("wrong") > 0 and {s for _, s in wrong} == {"wrong"}
        assert page.inner_text("#shown") == f"{len(wrong)} of {len(lines)} samples shown"
        assert not page.locator('article.card[data-status="correct"]').first.is_visible()
        page.click("button[data-status-filter=all]")
        page.select_option("#f-category", "c:faithfulness")
        assert len(visible()) == sum(line["meta"]["category"] == "faithfulness" for line in lines)
        page.select_option("#f-category", "")
        page.fill("#f-search", "Astronaut")
        found = {i for i, _ in visible()}
        assert found == {line["id"] for line in lines if "astronaut" in search_text(line)} and 0 < len(found) < 24
        page.fill("#f-search", "")
        assert len(visible()) == len(lines)
        browser.close()
    assert requests == [url]
    assert errors == []
