"""The style sheet and script of `rrbench report` pages, kept as strings so the page needs no package data files.

Both are inlined into every page and allowed by hash in the page's Content-Security-Policy, so nothing else can
run or load even if a prompt slipped through escaping.
"""

from __future__ import annotations

CSS = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #d9dde5; --bg: #f6f7f9; --card: #fff;
        --ok: #1d7a3a; --bad: #b3261e; --warn: #8a5a00; --mix: #5b3fa6; --info: #2f5d9b; }
* { box-sizing: border-box; }
body { margin: 0; padding: 16px 24px 48px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
       color: var(--fg); background: var(--bg); }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 20px 0 6px; }
h4 { font-size: 13px; margin: 10px 0 4px; }
code, pre, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12px; }
pre { white-space: pre-wrap; word-break: break-word; background: var(--bg); padding: 6px; margin: 4px 0; }
table { border-collapse: collapse; background: var(--card); }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eef0f4; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
dl.run { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 8px 0; }
dl.run dt { color: var(--muted); }
dl.run dd { margin: 0; }
.banner { background: #fff4d6; border: 1px solid #e0c36a; padding: 6px 10px; margin: 8px 0; }
.filters { position: sticky; top: 0; z-index: 2; background: var(--bg); padding: 8px 0;
           display: flex; flex-wrap: wrap; gap: 8px; align-items: center; border-bottom: 1px solid var(--line); }
.filters button { border: 1px solid var(--line); background: var(--card); padding: 3px 10px; border-radius: 12px;
                  cursor: pointer; font: inherit; }
.filters button[aria-pressed="true"] { background: var(--fg); color: #fff; border-color: var(--fg); }
.filters input[type="search"] { min-width: 260px; padding: 3px 6px; font: inherit; }
#shown { color: var(--muted); margin-left: auto; }
.cards { display: flex; flex-direction: column; gap: 12px; margin-top: 12px; }
article.card { background: var(--card); border: 1px solid var(--line); border-left: 5px solid var(--line);
               padding: 10px 14px; content-visibility: auto; contain-intrinsic-size: auto 640px; }
article.card[hidden] { display: none; }
article.st-correct { border-left-color: var(--ok); }
article.st-wrong { border-left-color: var(--bad); }
article.st-failed { border-left-color: var(--warn); }
article.st-mixed { border-left-color: var(--mix); }
article.st-skipped, article.st-unscored { border-left-color: var(--info); }
.card header { display: flex; flex-wrap: wrap; gap: 8px; align-items: baseline; }
.badge { font-size: 12px; font-weight: 600; padding: 0 8px; border-radius: 10px; color: #fff; }
.badge.correct { background: var(--ok); } .badge.wrong { background: var(--bad); }
.badge.failed { background: var(--warn); } .badge.mixed { background: var(--mix); }
.badge.skipped, .badge.unscored { background: var(--info); }
.category { color: var(--muted); }
.meta { color: var(--muted); font-size: 12px; }
.prompt { margin: 6px 0; }
.images { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; margin: 6px 0; }
figure { margin: 0; display: flex; flex-direction: column; align-items: center; max-width: 100%; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); background: #eee; }
figure.source img { border-style: dashed; }
figure.source { margin-right: 10px; }
figure.human img, figure.human .placeholder { outline: 3px solid var(--ok); outline-offset: 1px; }
figcaption { font-size: 12px; text-align: center; }
figcaption .letter { font-weight: 700; font-size: 14px; }
.placeholder { display: flex; align-items: center; justify-content: center; text-align: center; padding: 8px;
               border: 1px dashed var(--muted); color: var(--muted); background: #f0f1f4; font-size: 12px;
               overflow: hidden; word-break: break-word; }
.label b, .trial b { color: var(--muted); font-weight: 600; }
.failure { color: var(--warn); }
.rationale, .refined { margin: 4px 0; white-space: pre-wrap; }
table.trials, table.aspects { margin: 4px 0; font-size: 13px; }
.trial { border-top: 1px dotted var(--line); margin-top: 6px; }
"""

# One pass over the cards per filter change; the search text of each card is collected once.
JS = """
(function () {
  "use strict";
  var cards = Array.prototype.slice.call(document.querySelectorAll("article.card"));
  var texts = cards.map(function (card) {
    var parts = Array.prototype.map.call(card.querySelectorAll("[data-s]"), function (el) { return el.textContent; });
    return parts.join("\\n").toLowerCase();
  });
  var buttons = Array.prototype.slice.call(document.querySelectorAll("button[data-status-filter]"));
  var category = document.getElementById("f-category");
  var search = document.getElementById("f-search");
  var shown = document.getElementById("shown");
  var status = "all";

  function apply() {
    var wantCategory = category.value;
    var needle = search.value.trim().toLowerCase();
    var visible = 0;
    cards.forEach(function (card, i) {
      var ok = (status === "all" || card.dataset.status === status) &&
               (wantCategory === "" || "c:" + card.dataset.category === wantCategory) &&
               (needle === "" || texts[i].indexOf(needle) !== -1);
      card.hidden = !ok;
      if (ok) { visible += 1; }
    });
    shown.textContent = visible + " of " + cards.length + " samples shown";
  }

  buttons.forEach(function (button) {
    button.addEventListener("click", function () {
      status = button.dataset.statusFilter;
      buttons.forEach(function (b) { b.setAttribute("aria-pressed", String(b === button)); });
      apply();
    });
  });
  category.addEventListener("change", apply);
  search.addEventListener("input", apply);
  apply();
})();
"""
