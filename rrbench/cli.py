"""The `rrbench` command.

Exit codes: 0 success, 2 user error (one line, no traceback), 1 internal error, 130 interrupted. A plug-in that
raises while it is built (its factory) or started is a user error naming the plug-in (``RRBENCH_DEBUG=1`` adds the
traceback); KeyboardInterrupt or SystemExit raised by a plug-in is an interruption. `rrbench run` also exits 1 when
a run ends ``failed`` or ``incomplete`` (samples missing), after saying so.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from rrbench import __version__, metrics, registry
from rrbench.display import describe_run
from rrbench.refine import cli as refine_cli
from rrbench.spec import RunSpec, load_manifest, parse_assignments
from rrbench.types import UserError

if TYPE_CHECKING:
    from rrbench.groups import Planned

DEMO = {"task": "sanity", "model": "classical-iqa"}
GENERATE_DEMO = {"task": "sanity-gen", "generator": "painter"}

RUN_EPILOG = """\
examples:
  rrbench run                                       the embedded demo: sanity x classical-iqa, offline
  rrbench run --task sanity --model classical-iqa,random -T size=512 --limit 100
  rrbench run --task genai-bench-t2i --model M --limit 200 --subset stratified   a quick, unbiased estimate
  rrbench run --task sanity --model always-first --order both
  rrbench run --task genai-bench --model M          a task group: one run per member, then a summary (ls groups)
  rrbench run --config run.yaml                     a flat YAML/JSON manifest, or any run.json to replay it

Runs land in OUTPUT/<task>__<model>__<spec-hash>/ (run.json + samples.jsonl). Running the same spec again
resumes it: finished samples are kept, failed ones retried, nothing is duplicated. A changed spec gets its own
directory. Responses are cached by model fingerprint and exact request (--cache, RRBENCH_CACHE).
"""


class _Parser(argparse.ArgumentParser):
    """argparse prints its usage block above an error; rrbench's user errors are one line (usage is in --help).
    Sub-command parsers inherit this class (argparse makes them with ``type(self)``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rrbench",
        description="Evaluate reward models for visual generation: preference benchmarks, judges, leaderboards.",
    )
    parser.add_argument("--version", action="version", version=f"rrbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run(sub)
    _add_generate(sub)
    refine_cli.add_parser(sub)
    _add_export(sub)
    _add_import(sub)
    _add_ls(sub)
    _add_show(sub)
    _add_rescore(sub)
    _add_compare(sub)
    _add_doctor(sub)
    _add_runs(sub)
    _add_leaderboard(sub)
    _add_report(sub)
    return parser


def _add_run(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run reward models on tasks (no arguments: the offline demo)",
        description="Run one or more reward models on one or more tasks; one run directory per combination.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", help="task or task-group name(s), comma-separated (see `rrbench ls tasks`, "
                                  "`rrbench ls groups`)")
    p.add_argument("--model", help="reward model name(s), comma-separated (see `rrbench ls models`)")
    p.add_argument("-T", dest="task_args", action="append", metavar="KEY=VALUE", help="task argument (repeatable)")
    p.add_argument("-M", dest="model_args", action="append", metavar="KEY=VALUE", help="model argument (repeatable)")
    p.add_argument("--limit", type=int, help="judge only N samples of the task (the first N; see --subset)")
    p.add_argument("--subset", choices=("first", "random", "stratified"),
                   help="which N samples --limit takes: first (default, dataset order), random (a seeded sample: "
                        "--seed), or stratified (seeded, proportional per category x label class); the chosen "
                        "ids are recorded in the spec, so they name the run directory and a resume takes the same")
    p.add_argument("--seed", type=int, help="seed for order randomisation, baselines and bootstrap (default 0)")
    p.add_argument("--output", default=None, help="folder that holds run directories (default: runs/)")
    p.add_argument("--order", choices=("fixed", "swapped", "both", "random"),
                   help="candidate order: dataset order, reversed, both (two trials), or seeded random per sample")
    p.add_argument("--protocol", help="a named alternative protocol of the task (e.g. rationalrewards-paper)")
    p.add_argument("--tie-policy", help="override the task's tie policy (see `rrbench ls metrics`)")
    p.add_argument("--failure-policy", choices=("excluded", "wrong"), help="headline failure policy")
    p.add_argument("--concurrency", type=int, default=None, help="samples in flight at once (default 32)")
    p.add_argument("--call-timeout", type=float, default=None, metavar="SECONDS",
                   help="deadline of one model call: past it, the call's samples fail as 'timeout' and the run goes "
                        "on (default 600 for in-process models, none for server-backed ones, whose requests have "
                        "-M timeout_s; 0 turns it off)")
    p.add_argument("--data", help="local copy of the task's dataset in its public schema (file or folder)")
    p.add_argument("--no-resume", action="store_true",
                   help="start fresh: an existing run directory of this spec is moved aside, not deleted")
    p.add_argument("--config", help="YAML/JSON manifest with the same fields as these flags, or a run.json")
    p.add_argument("--cache", help="response cache file (default: $RRBENCH_CACHE or ~/.cache/rrbench/...)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the response cache")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--base-url", dest="base_urls", action="append", metavar="URL",
                   help="OpenAI-compatible endpoint of the model (repeatable: replicas are load-balanced)")
    p.add_argument("--api-key-env", metavar="NAME", help="environment variable holding the API key (never logged)")
    p.add_argument("--images", metavar="DIR",
                   help="judge existing images of a generation task: a generation run directory (rrbench generate) "
                        "or a folder in the task's official output layout (images made anywhere)")
    p.add_argument("--generator", help="make the generation task's images first (a generation run, resumable on "
                                       "its own), then judge them: two run directories")
    p.add_argument("-G", dest="generator_args", action="append", metavar="KEY=VALUE",
                   help="generator argument (repeatable; see `rrbench ls generators NAME`)")
    _add_sharding(p)


GENERATE_EPILOG = """\
examples:
  rrbench generate                                   the embedded demo: sanity-gen x painter, offline
  rrbench generate --task sanity-gen --generator painter -G error_rate=0.25 -T images_per_prompt=4
  rrbench generate --task T --generator flux-dev -G path=/models/flux -G steps=28 --limit 50
  rrbench run --task sanity-gen --images runs/sanity-gen__gen-painter__<hash> --model sanity-gen-judge

A generation run lands in OUTPUT/<task>__gen-<generator>__<spec-hash>/: run.json, samples.jsonl (prompt, seeds,
settings, image paths, failures) and images/ (each image stored once, by content). Image i of a sample is made
from the seed f(--seed, sample id, i) alone, so batch size, --limit and resume never change an image. Running the
same command again makes only the images that are missing or failed.
"""


def _add_generate(sub: Any) -> None:
    p = sub.add_parser(
        "generate",
        help="make a generation task's images with a generator (no arguments: the offline demo)",
        description="Make the images of a text-to-image or editing task with a generator; one run directory.",
        epilog=GENERATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", help="generation task (see `rrbench ls tasks`; default sanity-gen)")
    p.add_argument("--generator", help="generator (see `rrbench ls generators`; default painter)")
    p.add_argument("-T", dest="task_args", action="append", metavar="KEY=VALUE",
                   help="task argument (repeatable), e.g. images_per_prompt=4")
    p.add_argument("-G", dest="generator_args", action="append", metavar="KEY=VALUE",
                   help="generator argument (repeatable): path, steps, guidance, width, height, dtype, lora, ...")
    p.add_argument("--limit", type=int, help="only the first N prompts of the task (see --subset)")
    p.add_argument("--subset", choices=("first", "random", "stratified"), help="which N prompts --limit takes")
    p.add_argument("--seed", type=int, help="run seed: image i of a sample gets seed f(seed, sample id, i) (default 0)")
    p.add_argument("--output", default=None, help="folder that holds run directories (default: runs/)")
    p.add_argument("--data", help="local copy of the task's dataset in its public schema (file or folder)")
    p.add_argument("--concurrency", type=int, default=None, help="prompts in flight at once (default 32)")
    p.add_argument("--call-timeout", type=float, default=None, metavar="SECONDS",
                   help="deadline of one generator call (default 600; 0 turns it off)")
    p.add_argument("--no-resume", action="store_true",
                   help="start fresh: an existing run directory of this spec is moved aside, not deleted")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    _add_sharding(p)


def _add_sharding(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shards", type=int, default=None, metavar="N",
                   help="make images (or score them, with an in-process --model) with N copies of the generator "
                        "(the model), as Ray actors (one GPU each where there are GPUs); a local Ray cluster unless "
                        "--ray names one. Images and scores are identical to one process's")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="shard over a Ray cluster: ADDRESS of a running one (ray://host:10001 or host:6379), or "
                        "none for a local one; --shards N actors (default 1)")


def _add_export(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="copy a generation run's images (or a judge run's answers) into the files a benchmark's own "
             "evaluator reads; `export lm-eval DIR`: an lm-evaluation-harness task pack",
        description="Write a generation run's images into DIR, named as the task's official evaluator expects "
                    "(--layout official) or as rrbench names them (--layout rrbench: <sample id>_<i>.png). "
                    "Given a judge run of a benchmark's own judge protocol, write its raw judge answers in the "
                    "files the benchmark's official scorer reads, so that scorer can be run on them. "
                    "`rrbench export lm-eval DIR [--task T,...] [--data PATH]`: when the first argument is the word "
                    "lm-eval, write an lm-evaluation-harness task pack into DIR instead (one YAML per preference "
                    "task, default every one that has an lm-eval form, plus utils.py; docs/lm-eval.md). A run "
                    "directory named lm-eval is exported with ./lm-eval.",
    )
    p.add_argument("run_dir", help="a generation run directory (rrbench generate), or a judge run of a benchmark's "
                                   "own judge protocol; or the word lm-eval")
    p.add_argument("out", help="the folder to write (created; existing files are never overwritten)")
    p.add_argument("--layout", choices=("official", "rrbench"), default="official",
                   help="official (the task's own evaluator layout; rrbench's where the task has none) or rrbench")
    p.add_argument("--task", help="lm-eval: the task(s) to export, comma-separated (default: every one)")
    p.add_argument("--data", help="lm-eval: a local copy of the one --task's dataset in its public schema; the pack "
                                  "reads it from this absolute path")


def _add_import(sub: Any) -> None:
    p = sub.add_parser(
        "import",
        help="turn another harness's answers into an rrbench run (lm-eval --log_samples output)",
        description="`rrbench import lm-eval SAMPLES.jsonl --task T`: read the samples file lm-eval wrote with "
                    "--log_samples for a task of a pack from `rrbench export lm-eval`, and write an rrbench run "
                    "directory scored with rrbench's metric code (coverage, CIs). docs/lm-eval.md",
    )
    p.add_argument("format", choices=("lm-eval",), help="where the answers come from")
    p.add_argument("samples", help="lm-eval's samples_<task>_<time>.jsonl")
    p.add_argument("--task", required=True, help="the rrbench task the samples are of (e.g. genai-bench-t2i)")
    p.add_argument("--data", help="the local copy the pack was made from (as rrbench run --data)")
    p.add_argument("--output", default=None, help="folder that holds run directories (default: runs/)")
    p.add_argument("--model-name", default="lm-eval", help="the judge's name in the run (default lm-eval)")


LS_EPILOG = """\
examples:
  rrbench ls                          everything registered, one line each
  rrbench ls tasks                    tasks only
  rrbench ls tasks genai-bench-t2i    one task in full: -T keys and defaults, protocols, data source, size
  rrbench ls models pickscore         one model in full: -M keys and defaults, extra, the files it loads
"""


def _add_ls(sub: Any) -> None:
    p = sub.add_parser("ls", help="list registered tasks, task groups, models, generators, metrics, tie/credit "
                                  "rules and judge prompts; `ls KIND NAME` describes one in full",
                       epilog=LS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="?", choices=("tasks", "groups", "models", "generators", "metrics", "rules",
                                               "prompts"), help="one kind only")
    p.add_argument("name", nargs="?", help="one task, model, generator, metric or rule: describe it in full")


def _add_show(sub: Any) -> None:
    p = sub.add_parser("show", help="print a run's metrics with CIs, coverage and protocol")
    p.add_argument("run_dir", help="a run directory (holds run.json)")


def _add_rescore(sub: Any) -> None:
    p = sub.add_parser(
        "rescore",
        help="recompute a run's metrics under another policy, with zero model calls",
        description="Recompute metrics from the stored judgements and write a new run that points to its source.",
    )
    p.add_argument("run_dir")
    p.add_argument("--tie-policy", help="tie policy to apply (see `rrbench ls metrics`)")
    p.add_argument("--failure-policy", choices=("excluded", "wrong"))
    p.add_argument("--aggregation", help="critique judges: recompute scores from the recorded aspect scores "
                   "(pairwise-sum/v1, pointwise-mean/v1, rl-edit/v1)")
    p.add_argument("--na", choices=("drop", "2.5"), help="critique judges: N/A policy of pairwise-sum/v1 "
                   "(drop the aspect for both candidates, or count N/A as 2.5 as the paper did)")
    p.add_argument("--seed", type=int, help="bootstrap seed (default: the run's)")
    p.add_argument("--output", help="where the new run directory goes (default: beside the source)")


def _add_compare(sub: Any) -> None:
    p = sub.add_parser(
        "compare",
        help="paired comparison of two runs on the same samples (paired bootstrap CI, exact McNemar or sign test)",
        description="B minus A on the samples both runs judged, under A's protocol unless overridden: a paired "
                    "bootstrap CI of the difference and an exact test, McNemar when every sample is right or wrong "
                    "in both runs, else the sign test on per-sample differences (docs/statistics.md).",
    )
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--tie-policy", help="tie policy for both runs (default: run A's)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")


DOCTOR_EPILOG = """\
examples:
  rrbench doctor                                    the whole machine: every extra, GPU, writable folders
  rrbench doctor --model pickscore --task pickapic-v2          what this run needs, and only that
  rrbench doctor --model hpsv2.1 -M path=ckpt/HPSv2            the files -M path= must hold
  rrbench doctor --task genai-bench-edit --data data/genai-bench   a local copy: found, right schema, size

With --model/--task it checks exactly what `rrbench run` would load: the extras their code imports, the task's data
(--data, or the hub snapshot in the local Hugging Face cache; not cached is a warning while the hub answers, since
a run downloads it), the files the model reads (weights, tokenizer, base model), and a judge's engine, API key and
server. `rrbench run` makes the same checks before it creates anything. Nothing is downloaded; an API key is
reported as set or not, never shown.

exit codes: 0 nothing would stop a run (warnings are fine), 1 at least one FAIL line, 2 a usage error (unknown
model or task, a bad argument).
"""


def _add_doctor(sub: Any) -> None:
    p = sub.add_parser(
        "doctor",
        help="what a run needs and what is missing, with the fix (exit 1 when something would stop a run)",
        description="Say what this machine can run and, for one model and task, what is missing and how to fix it.",
        epilog=DOCTOR_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", help="a reward model to check (see `rrbench ls models`)")
    p.add_argument("-M", dest="model_args", action="append", metavar="KEY=VALUE", help="model argument (repeatable)")
    p.add_argument("--generator", help="a generator to check: its extra and the weights it loads "
                                       "(see `rrbench ls generators`)")
    p.add_argument("-G", dest="generator_args", action="append", metavar="KEY=VALUE",
                   help="generator argument (repeatable)")
    p.add_argument("--task", help="a task whose data to check (see `rrbench ls tasks`)")
    p.add_argument("-T", dest="task_args", action="append", metavar="KEY=VALUE", help="task argument (repeatable)")
    p.add_argument("--data", help="the local copy of the task's dataset that `run --data` would read")
    p.add_argument("--base-url", dest="base_urls", action="append", metavar="URL", help="endpoint to check")
    p.add_argument("--api-key-env", metavar="NAME", help="environment variable holding the API key")
    p.add_argument("--output", default=None, help="the folder runs would go to (default: runs/)")


def _add_runs(sub: Any) -> None:
    p = sub.add_parser(
        "runs",
        help="list run directories: task, model, status, samples, headline number with its CI, PARTIAL",
        description="List the run directories under the given folders (default: runs/), newest first.",
    )
    p.add_argument("paths", nargs="*", help="run directories or folders holding them (default: runs/)")


LEADERBOARD_EPILOG = """\
examples:
  rrbench leaderboard                               every run under runs/, into runs/leaderboard/
  rrbench leaderboard runs/ other-runs/sanity__x__1a2b3c4d5e --out /tmp/lb --format md,csv
  rrbench leaderboard --reported none               measured numbers only
  rrbench leaderboard --plots all                   also one aspect-score figure per critic run

Only complete runs count; for each (task, task version, spec) the latest one wins. A column never mixes task
versions, and a measured and a reported number of different protocols never share a cell. Partial runs (a smaller
local copy, --limit) are left out of the paper-layout table and marked in the per-task tables. Measured rows come
first; published numbers (shipped with rrbench, one entry per number with its source and protocol) follow.
"""


def _add_leaderboard(sub: Any) -> None:
    p = sub.add_parser(
        "leaderboard",
        help="tables (md, csv, tex, html, json) and plots from run directories, beside the published numbers",
        description="Build the preference leaderboard (the RationalRewards paper's Table 1 layout) and one table "
                    "per task from run directories only.",
        epilog=LEADERBOARD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="*", help="run directories or folders holding them (default: runs/)")
    p.add_argument("--out", default=None, help="output folder (default: leaderboard/ in the first folder of runs, or "
                                              "./leaderboard when the first path is a run directory)")
    p.add_argument("--format", dest="formats", default="md,csv,tex,html,json",
                   help="comma-separated subset of md,csv,tex,html,json (default: all)")
    p.add_argument("--reported", default=None,
                   help="JSON file of published numbers (default: the one shipped with rrbench; 'none' to omit)")
    p.add_argument("--plots", choices=("summary", "all", "none"), default="summary",
                   help="summary (default): accuracy with CIs per task and position bias; all: also one aspect-score "
                        "figure per critic run; none: tables only. Plots need matplotlib (rrbench[plots]); "
                        "without it the build notes so and writes the tables only")
    p.add_argument("--no-plots", dest="plots", action="store_const", const="none", help="same as --plots none")


def _add_report(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="a self-contained HTML page of one run: metrics, coverage, per-sample cards with filters",
        description="Write one static HTML file (images inlined, no network resources) showing a run's metrics and "
                    "coverage, then one card per sample: prompt, source image, candidate thumbnails, human label, "
                    "verdict, per-aspect scores, rationale and refined prompt, with filters and search.",
    )
    p.add_argument("run_dir", help="a run directory (holds run.json and samples.jsonl)")
    p.add_argument("--out", help="output file (default: RUN_DIR/report.html)")
    p.add_argument("--data", help="where the task's images are, if not where the run read them (its --data)")
    p.add_argument("--limit", type=int, help="at most N sample cards (default: all)")
    p.add_argument("--thumb", type=int, default=256, help="thumbnail size in pixels, longest side (default 256)")


# ---------------------------------------------------------------------------------------------------- commands


def cmd_generate(args: argparse.Namespace) -> int:
    from rrbench.session import execute

    spec, output, options = _generate_spec(args, GENERATE_DEMO)
    if not options.get("ray_address"):  # on a remote cluster the weights are the actors' to find, not the driver's
        _preflight([spec], {})
    return execute(_choose_subset(spec, {}, options), output, **options)


def _generate_spec(args: argparse.Namespace, defaults: dict[str, str]) -> tuple[RunSpec, Path, dict[str, Any]]:
    """The generation run's spec from the flags (the demo's task and generator where none is given)."""
    task = args.task or defaults["task"]
    generator = args.generator or defaults.get("generator")
    if not generator:
        raise UserError("--generator is required")
    generator_args = parse_assignments(args.generator_args, "-G")
    if "shards" in generator_args:  # how many copies make the images, not a setting of the generator
        shards = generator_args.pop("shards")
        if isinstance(shards, bool) or not isinstance(shards, int):
            raise UserError(f"-G shards= must be a number of generator copies, not {shards!r}")
        args.shards = args.shards or shards
    spec = RunSpec.from_json({
        "task": task, "generator": generator, "task_args": parse_assignments(args.task_args, "-T"),
        "generator_args": generator_args,
        **{k: getattr(args, k) for k in ("limit", "seed", "data", "subset") if getattr(args, k) is not None},
    })
    options = {k: getattr(args, k) for k in ("concurrency", "no_resume", "quiet", "call_timeout")
               if getattr(args, k, None) is not None and getattr(args, k, None) is not False}
    return spec, Path(args.output or "runs"), {**options, **_sharding(args), "no_cache": True}


def _sharding(args: argparse.Namespace) -> dict[str, Any]:
    """``--shards N`` / ``--ray [ADDRESS]``: how the images are made or scored, never which images or what scores
    (not in the spec)."""
    shards, ray = getattr(args, "shards", None), getattr(args, "ray", None)
    if shards is None and ray is None:
        return {}
    if shards is not None and shards < 1:
        raise UserError(f"--shards must be at least 1, not {shards}")
    return {"shards": shards or 1, "ray_address": None if ray in (None, "local") else ray}


def cmd_export(args: argparse.Namespace) -> int:
    from rrbench.export import export

    if args.run_dir == "lm-eval":
        return _export_lm_eval(args)
    if args.task or args.data:
        raise UserError("--task and --data belong to `rrbench export lm-eval DIR`")
    written = export(Path(args.run_dir), Path(args.out), args.layout)
    print(f"wrote {written} files to {args.out} ({args.layout} layout)")
    return 0


def _export_lm_eval(args: argparse.Namespace) -> int:
    from rrbench.lmeval.core import lm_name
    from rrbench.lmeval.export import export as export_pack

    tasks = [t.strip() for t in args.task.split(",") if t.strip()] if args.task else None
    report = export_pack(Path(args.out), tasks, Path(args.data) if args.data else None)
    for name, why in report.items():
        print(f"  {name}: " + ("written" if why is None else f"not exported: {why}"))
    print(f"wrote an lm-eval task pack to {args.out}: lm_eval --include_path {args.out} --tasks "
          + ",".join(lm_name(n) for n, why in report.items() if why is None))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from rrbench.lmeval.import_ import import_samples

    out, record = import_samples(Path(args.samples), args.task, Path(args.data) if args.data else None,
                                 Path(args.output or "runs"), args.model_name)
    print(describe_run(record, str(out)))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from rrbench.groups import expand
    from rrbench.session import execute

    if args.generator:
        return _generate_then_judge(args)
    fields = _run_fields(args)
    images = fields.pop("images", None)
    planned = expand(_split(fields.pop("task")), fields.pop("task_args", {}))  # task groups become their members
    models = _split(fields.pop("model"))
    output = Path(fields.pop("output", None) or "runs")
    keys = ("concurrency", "no_resume", "cache", "no_cache", "quiet", "base_urls", "api_key_env", "call_timeout")
    options = {k: fields.pop(k) for k in keys if k in fields}
    options.update(_sharding(args))  # scored by Ray actors (in-process models only)
    if any(item.group for item in planned):
        return _run_group(planned, models, fields, output, options)
    specs = [RunSpec.from_json({**fields, "task": item.task, "task_args": item.task_args, "model": model_name})
             for item in planned for model_name in models]
    if not options.get("ray_address"):  # on a remote cluster the weights are the actors' to find, not the driver's
        _preflight(specs, options)  # what is missing for any of them, all in one line, before anything is created
    chosen: dict[str, Any] = {}
    worst = 0
    for spec in specs:
        worst = max(worst, execute(_choose_subset(spec, chosen, options), output, images=images, **options))
    return worst


def _generate_then_judge(args: argparse.Namespace) -> int:
    """``run --generator G --model J``: the generation run, then one judge run per model over its images."""
    from rrbench.session import execute

    if args.images:
        raise UserError("give --images (judge existing images) or --generator (make them first), not both")
    if not args.model:
        raise UserError("--generator makes images for a judge: give --model too (or use rrbench generate)")
    gen_spec, output, gen_options = _generate_spec(args, {"task": args.task or ""})
    if not gen_spec.task:
        raise UserError("--task is required with --generator")
    if not gen_options.get("ray_address"):
        _preflight([gen_spec], {})
    gen_spec = _choose_subset(gen_spec, {}, gen_options)
    code = execute(gen_spec, output, **gen_options)
    if code != 0:
        print("rrbench: the generation run did not complete: nothing judged", file=sys.stderr)
        return code
    gen_dir = output / gen_spec.dirname()
    fields = _run_fields(args)
    fields.pop("images", None)
    fields.pop("generator", None)
    fields.pop("generator_args", None)
    output = Path(fields.pop("output", None) or "runs")
    keys = ("concurrency", "no_resume", "cache", "no_cache", "quiet", "base_urls", "api_key_env", "call_timeout")
    options = {k: fields.pop(k) for k in keys if k in fields}
    worst = 0
    for model_name in _split(fields.pop("model")):
        spec = RunSpec.from_json({**fields, "model": model_name})
        _preflight([spec], options)
        worst = max(worst, execute(spec, output, images=str(gen_dir), **options))
    return worst


def _preflight(specs: list[RunSpec], options: dict[str, Any]) -> None:
    from rrbench.doctor import preflight

    preflight(specs, {"base_urls": options.get("base_urls"), "api_key_env": options.get("api_key_env")})


def _choose_subset(spec: RunSpec, chosen: dict[str, Any], options: dict[str, Any]) -> RunSpec:
    """``--subset random|stratified``: the ids join the spec before the run directory is named (once per task and
    data for all the models of one command)."""
    from rrbench import subset

    if subset.method_of(spec) == "first":
        return spec
    key = repr((spec.task, sorted(spec.task_args.items()), spec.data, spec.seed, spec.limit, subset.method_of(spec)))
    task = registry.get("task", spec.task).build(**spec.task_args)
    if key not in chosen:
        resolved = subset.resolve(spec, task)
        chosen[key] = (resolved.subset, resolved.limit)
    resolved = dataclasses.replace(spec, subset=chosen[key][0], limit=chosen[key][1])
    if not options.get("quiet"):
        print(subset.describe(resolved, task.size_of(Path(spec.data) if spec.data else None)), file=sys.stderr)
    return resolved


def _run_group(planned: list[Planned], models: list[str], fields: dict[str, Any], output: Path,
               options: dict[str, Any]) -> int:
    """Each member an ordinary run; a member's user error is said and the others still run; one summary line per
    member at the end."""
    from rrbench.groups import Done, summary
    from rrbench.session import execute

    worst, done = 0, []
    for item, model_name in [(item, model) for item in planned for model in models]:
        spec = RunSpec.from_json({**fields, "task": item.task, "task_args": item.task_args, "model": model_name})
        try:
            _preflight([spec], options)
            spec = _choose_subset(spec, {}, options)
            worst = max(worst, execute(spec, output, **options))
            done.append(Done(item, model_name, output / spec.dirname()))
        except UserError as exc:
            pair = f"{item.task} x {model_name}"
            print(f"rrbench: error: {exc}" if pair in str(exc) else f"rrbench: error: {pair}: {exc}", file=sys.stderr)
            worst = max(worst, 2)
            done.append(Done(item, model_name, None, str(exc)))
        if worst == 130:  # Ctrl-C stops the whole group, not just the member in flight
            break
    groups = ", ".join(dict.fromkeys(item.group for item in planned if item.group))
    print(f"\ntask group {groups}: {len(done)} runs\n{summary(done)}")
    return worst


def _run_fields(args: argparse.Namespace) -> dict[str, Any]:
    """Flags over manifest over the demo defaults; -T/-M merge key by key."""
    fields: dict[str, Any] = load_manifest(args.config) if args.config else {}
    flags = {
        "task": args.task, "model": args.model, "limit": args.limit, "seed": args.seed, "output": args.output,
        "order": args.order, "protocol": args.protocol, "tie_policy": args.tie_policy, "subset": args.subset,
        "failure_policy": args.failure_policy, "concurrency": args.concurrency, "data": args.data,
        "call_timeout": args.call_timeout,
        "cache": args.cache, "base_urls": args.base_urls, "api_key_env": args.api_key_env, "images": args.images,
    }
    fields.update({k: v for k, v in flags.items() if v is not None})
    for flag in ("no_resume", "no_cache", "quiet"):
        if getattr(args, flag):
            fields[flag] = True
    fields["task_args"] = {**fields.get("task_args", {}), **parse_assignments(args.task_args, "-T")}
    fields["model_args"] = {**fields.get("model_args", {}), **parse_assignments(args.model_args, "-M")}
    if not fields.get("task") and not fields.get("model"):
        fields.update(DEMO)
    for name in ("task", "model"):
        if not fields.get(name):
            raise UserError(f"--{name} is required when --{'model' if name == 'task' else 'task'} is given")
    return fields


def _split(value: str) -> list[str]:
    names = [n.strip() for n in str(value).split(",") if n.strip()]
    if not names:
        raise UserError(f"empty name list: {value!r}")
    return names


def cmd_ls(args: argparse.Namespace) -> int:
    kinds = {"tasks": "task", "models": "model", "generators": "generator", "metrics": "metric", "rules": "rule"}
    if args.name:
        return _ls_one(args.what, args.name, kinds)
    chosen = [args.what] if args.what else ["tasks", "groups", *(k for k in kinds if k != "tasks"), "prompts"]
    for plural in chosen:
        if plural == "groups":
            _ls_groups(heading=not args.what)
            continue
        if plural == "prompts":
            _ls_prompts(heading=not args.what)
            continue
        entries = registry.entries(kinds[plural])  # type: ignore[arg-type]
        if not args.what:
            print(f"{plural}:")
        if not entries:
            print("  (none registered yet)")
        width = max((len(e.name) for e in entries), default=0)
        for entry in entries:
            print(f"  {entry.name.ljust(width)}  {_ls_detail(entry)}")
    return 0


def _ls_one(what: str | None, name: str, kinds: dict[str, str]) -> int:
    """`rrbench ls KIND NAME`: one plug-in in full (rrbench.listing)."""
    from rrbench import listing

    if what is None:
        raise UserError(f"name the kind first: rrbench ls tasks {name} (or models, groups, ...)")
    if what in kinds:
        print(listing.describe(kinds[what], name))
        return 0
    if what == "groups":
        group = registry.find_group(name)
        if group is None:
            raise UserError(f"unknown task group '{name}'; see `rrbench ls groups`")
        members = "\n".join(f"  {m.label()}" for m in group.members)
        print(f"task group {group.name}: {group.description}\nmembers (one run each; -T goes to every member):\n"
              f"{members}\ndefined in: {group.module}")
        return 0
    from rrbench import prompts

    spec = prompts.catalogue().get(name)
    if spec is None:
        raise UserError(f"unknown judge prompt '{name}'; see `rrbench ls prompts`")
    source = "\n".join(f"  {k}: {v}" for k, v in spec.source.items())
    print(f"judge prompt {spec.key}: {spec.kind}, {spec.answer} answer\nsource:\n{source}")
    return 0


def _ls_groups(heading: bool) -> None:
    """Task groups: `rrbench run --task GROUP` runs every member (fixed arguments shown in brackets)."""
    groups = registry.groups()
    if heading:
        print("task groups (--task GROUP runs every member):")
    if not groups:
        print("  (none registered yet)")
    width = max((len(g.name) for g in groups), default=0)
    for group in groups:
        members = ", ".join(m.label() for m in group.members)
        print(f"  {group.name.ljust(width)}  {group.description}  |  tasks: {members}")


def _ls_prompts(heading: bool) -> None:
    """Judge prompts by family (`-M prompt=FAMILY`), each with its kind and where its text comes from."""
    from rrbench import prompts

    if heading:
        print("judge prompts (-M prompt=official|FAMILY; each is a data file with its source):")
    specs = sorted((s for key, s in prompts.catalogue().items() if "@" in key), key=lambda s: s.key)
    width = max((len(s.key) for s in specs), default=0)
    for spec in specs:
        where = spec.source.get("path") or ""
        print(f"  {spec.key.ljust(width)}  {spec.kind}, {spec.answer} answer  |  {spec.source.get('repo')} {where}")


def _ls_detail(entry: registry.Entry) -> str:
    notes = [entry.description]
    if entry.kind == "task":
        notes.append(_task_summary(entry))
    if entry.name == "accuracy":
        notes.append("tie policies: " + ", ".join(metrics.TIE_POLICIES))
    for key in ("protocol", "size", "paper"):
        if entry.info.get(key) is not None:
            notes.append(f"{key}: {entry.info[key]}")
    if entry.extra:
        notes.append(f"needs: pip install 'rrbench[{entry.extra}]'")
    return "  |  ".join(n for n in notes if n)


def _task_summary(entry: registry.Entry) -> str:
    """Version, default protocol and size from the task built with its defaults (factories load no data)."""
    try:
        built = entry.build()
    except Exception as exc:  # a task that needs arguments or data still gets listed
        return f"(needs arguments: {exc})"
    alternatives = f" (also: {', '.join(built.alternatives)})" if built.alternatives else ""
    size = built.size if built.size is not None else built.info.size if built.info.size is not None else "?"
    return f"v{built.version}, protocol {built.protocol.id}{alternatives}, {size} samples"


def cmd_show(args: argparse.Namespace) -> int:
    from rrbench.record import read_run_dict
    from rrbench.runner import checked_record

    path = Path(args.run_dir)
    record, note = checked_record(path, read_run_dict(path))  # the log's numbers, not a hand-edited copy
    print(describe_run(record, str(path)))
    if note:
        print(f"note: {note}", file=sys.stderr)
    return 0


def cmd_rescore(args: argparse.Namespace) -> int:
    from rrbench.rescore import rescore

    out, record = rescore(
        Path(args.run_dir),
        tie_policy=args.tie_policy,
        failure_policy=args.failure_policy,
        seed=args.seed,
        output=Path(args.output) if args.output else None,
        aggregation=args.aggregation,
        na=args.na,
    )
    print(describe_run(record, str(out)))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import dataclasses

    from rrbench.display import compare_table
    from rrbench.record import read_run
    from rrbench.store import load_results
    from rrbench.types import Protocol

    record_a = read_run(Path(args.run_a))
    protocol = Protocol.from_json(record_a["protocol"])
    if args.tie_policy:
        if args.tie_policy not in metrics.TIE_POLICIES:
            raise UserError(f"unknown tie policy {args.tie_policy!r} (known: {', '.join(metrics.TIE_POLICIES)})")
        protocol = dataclasses.replace(protocol, tie_policy=args.tie_policy)
    read_run(Path(args.run_b))  # a clear error if B is not a run directory
    result = metrics.paired_compare(
        load_results(Path(args.run_a)), load_results(Path(args.run_b)), protocol, seed=args.seed
    )
    print(f"A: {args.run_a}\nB: {args.run_b}")
    print(compare_table(result))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Exit codes: 0 nothing would stop a run, 1 at least one FAIL, 2 a usage error (see DOCTOR_EPILOG)."""
    from rrbench import doctor

    if args.model and args.generator:
        raise UserError("check one of --model and --generator at a time")
    if not args.model and not args.task and not args.generator:
        if args.model_args or args.task_args or args.data or args.generator_args:
            raise UserError("-M, -G, -T and --data need --model, --generator or --task")
        sections = [("environment", list(doctor.environment_checks()))]
    else:
        target = doctor.doctor_target(
            args.task, parse_assignments(args.task_args, "-T"), args.model, parse_assignments(args.model_args, "-M"),
            {"base_urls": args.base_urls, "api_key_env": args.api_key_env}, args.data,
            generator=args.generator, generator_args=parse_assignments(args.generator_args, "-G"))
        what = " on ".join(n for n in (args.model or args.generator, args.task) if n)
        sections = [(title if title != "needed" else f"needed by {what}", checks)
                    for title, checks in target.sections(Path(args.output or "runs"))]
    checks = [c for _, section in sections for c in section]
    for title, section in sections:
        print(f"{title}:")
        for check in section:
            print(check.line())
    failed = sum(c.status == "FAIL" for c in checks)
    print(f"\n{failed} problem(s) that would stop a run, {sum(c.status == 'warn' for c in checks)} warning(s)")
    return 1 if failed else 0


def cmd_runs(args: argparse.Namespace) -> int:
    from rrbench.listing import runs_table

    paths = [Path(p) for p in args.paths] or [Path("runs")]
    if not args.paths and not paths[0].exists():
        raise UserError("no runs/ folder here: name run directories or folders of runs (rrbench runs DIR ...)")
    print(runs_table(paths))
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from rrbench.leaderboard import build

    return build.main(args)


def cmd_report(args: argparse.Namespace) -> int:
    from rrbench.report.page import write_report

    out = write_report(Path(args.run_dir), Path(args.out) if args.out else None, data=args.data,
                       limit=args.limit, thumb=args.thumb)
    print(f"report: {out}")
    return 0


COMMANDS = {
    "run": cmd_run, "ls": cmd_ls, "show": cmd_show, "rescore": cmd_rescore, "compare": cmd_compare,
    "doctor": cmd_doctor, "leaderboard": cmd_leaderboard, "report": cmd_report, "runs": cmd_runs,
    "generate": cmd_generate, "export": cmd_export, "import": cmd_import, "refine": refine_cli.cmd,
}


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a dataset's lone surrogate in a printed name must not crash a command
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed: the same exit code in-process
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        _debug_traceback(exc.__cause__)
        print(f"rrbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rrbench: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # rrbench's commands return their code: this one was raised by a plug-in
        print(f"rrbench: interrupted (SystemExit({exc.code!r}) raised by a plug-in)", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except BaseException as exc:
        return _unexpected(exc)


def _unexpected(exc: BaseException) -> int:
    """A plug-in's factory failing, or a full disk: one line, exit 2. Anything else is a bug: traceback, exit 1."""
    message = _plugin_failure(exc)
    if message is not None:
        _debug_traceback(exc)
        print(f"rrbench: error: {message}", file=sys.stderr)
        return 2
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        print(f"rrbench: error: cannot write {exc.filename or 'a file'}: {exc.strerror}", file=sys.stderr)
        return 2
    traceback.print_exception(exc)
    print("rrbench: internal error (the traceback above is a bug; please report it)", file=sys.stderr)
    return 1


def _plugin_failure(exc: BaseException) -> str | None:
    """One line for an exception that is a plug-in's fault, not rrbench's (so no traceback that blames rrbench):
    raised while its factory ran (the registry's ``Entry.build`` is on its way out), or raised in a plug-in's own
    file (a task's sample count, say, read before a run starts)."""
    from rrbench.runner import plugin_error

    frames = [frame for frame, _ in traceback.walk_tb(exc.__traceback__)]
    build = registry.Entry.build.__code__
    entry = next((frame.f_locals.get("self") for frame in frames if frame.f_code is build), None)
    if isinstance(entry, registry.Entry):
        return str(plugin_error(f"{entry.kind} '{entry.name}' ({entry.module}) failed to build", exc))
    if not frames:
        return None
    code = frames[-1].f_code
    owners = _plugin_files().get(code.co_filename)
    if not owners:
        return None
    qualname = getattr(code, "co_qualname", code.co_name)  # e.g. "factory.<locals>.count": the factory's own code
    mine = [e for e in owners if qualname.split(".")[0] == getattr(e.factory, "__qualname__", "").split(".")[0]]
    if len(mine) == 1 or len(owners) == 1:
        entry = (mine or owners)[0]
        return str(plugin_error(f"{entry.kind} '{entry.name}' ({entry.module}) raised", exc))
    return str(plugin_error(f"plug-in {owners[0].module} raised", exc))


def _plugin_files() -> dict[str, list[registry.Entry]]:
    """The source file of each registered plug-in's module, with the plug-ins it defines."""
    files: dict[str, list[registry.Entry]] = {}
    for kind in registry.KINDS:
        for entry in registry.entries(kind):
            path = getattr(sys.modules.get(entry.module), "__file__", None)
            if path:
                files.setdefault(path, []).append(entry)
    return files


def _debug_traceback(exc: BaseException | None) -> None:
    if exc is not None and os.environ.get("RRBENCH_DEBUG"):
        traceback.print_exception(exc)


if __name__ == "__main__":
    sys.exit(main())
