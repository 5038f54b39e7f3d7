"""``rrbench refine``: its flags and what it prints (the stages are in rrbench/refine/)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rrbench.spec import parse_assignments

DEMO: dict[str, Any] = {"task": "sanity-gen", "generator": "painter", "generator_args": {"error_rate": 0.25},
        "critic": "sanity-gen-critic", "judge": "sanity-gen-judge"}

EPILOG = """\
examples:
  rrbench refine                         the offline demo: sanity-gen x painter (error_rate 0.25), critic
                                         sanity-gen-critic, judge sanity-gen-judge
  rrbench refine --task imgedit-bench --generator flux-kontext -G path=/models/kontext \\
      --critic rationalrewards-8b --base-url http://127.0.0.1:8000/v1 --model gpt-4.1
  rrbench refine --task gedit-bench --generator qwen-image-edit -G lora=/ckpt/rl --critic rationalrewards-8b \\
      --rounds 2 --accept rr-paper                  RL + refine, two rounds, the paper's rule
  rrbench refine --task pica-bench --generator flux-kontext --critic prompt-enhancer --base-url URL
                                                    the blind prompt enhancer baseline (--accept always)

Stages (each an ordinary run directory under --output, named by its spec; running the same command again resumes
the one that stopped and reads the finished ones):
  base set (the same run as `rrbench generate`), critiqued by the critic while it is made;
  per round: the images the accept rule does not keep, made again from the critic's refined request with the base
  image's seed (the identity refiner: a new seed), critiqued while they are made; then the final set (kept +
  regenerated images), a generation run of its own;
  the base set and each final set judged by --model (default: the benchmark's own judge).
Printed and written to OUTPUT/<task>__refine-<critic>__<hash>/refine.json (with report.html): the paired gain
with a 95% CI per round, overall and per category, the images regenerated and why the others were kept, and the
critic's mean aspect scores before and after. Accept rules: rr-code (default; keep if Text Faithfulness >= 3 and
Physical/Visual Quality >= 3, as the reference code), rr-paper (regenerate if any applicable aspect < 3), always,
best-of (the critic keeps the better of the two). N/A aspects never block. See docs/refine.md.
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "refine",
        help="test-time Generate-Critique-Refine: critique generated images, regenerate with refined requests, "
             "measure the gain (no arguments: the offline demo)",
        description="Make a generation task's images, let a critic critique each one and refine its request, make "
                    "again what the accept rule does not keep, and judge both sets: the paired gain, with a CI.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", help="generation task (see `rrbench ls tasks`)")
    p.add_argument("--generator", help="generator (see `rrbench ls generators`)")
    p.add_argument("--critic", help="critic: a reward model that critiques and refines (rationalrewards-8b, a VLM "
                                    "judge, sanity-gen-critic) or a baseline refiner (prompt-enhancer, identity)")
    p.add_argument("--model", help="judge of both sets (default: the benchmark's own judge)")
    p.add_argument("-T", dest="task_args", action="append", metavar="KEY=VALUE", help="task argument (repeatable)")
    p.add_argument("-G", dest="generator_args", action="append", metavar="KEY=VALUE",
                   help="generator argument (repeatable), e.g. lora=DIR for RL + refine")
    p.add_argument("-M", dest="critic_args", action="append", metavar="KEY=VALUE", help="critic argument (repeatable)")
    p.add_argument("-J", dest="judge_args", action="append", metavar="KEY=VALUE", help="judge argument (repeatable)")
    p.add_argument("--rounds", type=int, default=1,
                   help="critique -> regenerate rounds on what is still not kept (default 1)")
    p.add_argument("--accept", help="accept rule: rr-code (default), rr-paper, always (the default for refiners "
                                    "that give no scores), best-of")
    p.add_argument("--max-request-chars", type=int, default=None, metavar="N",
                   help="a refined request longer than this keeps its image, counted (default 4000)")
    p.add_argument("--limit", type=int, help="only N samples of the task (see --subset)")
    p.add_argument("--subset", choices=("first", "random", "stratified"), help="which N samples --limit takes")
    p.add_argument("--seed", type=int, default=0, help="run seed: image seeds, bootstrap (default 0)")
    p.add_argument("--data", help="local copy of the task's dataset in its public schema")
    p.add_argument("--output", default=None, help="folder that holds the run directories (default: runs/)")
    p.add_argument("--concurrency", type=int, default=None, help="samples in flight per stage (default 32)")
    p.add_argument("--call-timeout", type=float, default=None, metavar="SECONDS",
                   help="deadline of one model or generator call (0 turns it off)")
    p.add_argument("--cache", help="response cache file (default: $RRBENCH_CACHE or ~/.cache/rrbench/...)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the response cache")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--base-url", dest="base_urls", action="append", metavar="URL",
                   help="OpenAI-compatible endpoint of the critic (repeatable)")
    p.add_argument("--api-key-env", metavar="NAME", help="variable holding the critic's API key (never logged)")
    p.add_argument("--judge-base-url", dest="judge_base_urls", action="append", metavar="URL",
                   help="OpenAI-compatible endpoint of the judge (repeatable)")
    p.add_argument("--judge-api-key-env", metavar="NAME", help="variable holding the judge's API key")


def job_of(args: argparse.Namespace) -> Any:
    from rrbench.refine.run import MAX_REQUEST_CHARS, Job

    demo = not (args.task or args.generator or args.critic)
    fields: dict[str, Any] = dict(DEMO) if demo else {}
    given = {"task": args.task, "generator": args.generator, "critic": args.critic, "judge": args.model}
    fields.update({k: v for k, v in given.items() if v})
    for name in ("task", "generator", "critic"):
        if not fields.get(name):
            from rrbench.types import UserError

            raise UserError(f"--{name} is required (or give none of --task/--generator/--critic for the demo)")
    options = {k: getattr(args, k) for k in ("concurrency", "quiet", "call_timeout", "cache", "no_cache")
               if getattr(args, k) is not None and getattr(args, k) is not False}
    return Job(
        task=fields["task"], generator=fields["generator"], critic=fields["critic"], judge=fields.get("judge"),
        task_args=parse_assignments(args.task_args, "-T"),
        generator_args={**fields.get("generator_args", {}), **parse_assignments(args.generator_args, "-G")},
        critic_args=parse_assignments(args.critic_args, "-M"), judge_args=parse_assignments(args.judge_args, "-J"),
        data=args.data, limit=args.limit, subset=args.subset, seed=args.seed, rounds=args.rounds,
        accept=args.accept,
        max_request_chars=MAX_REQUEST_CHARS if args.max_request_chars is None else args.max_request_chars,
        output=Path(args.output or "runs"),
        critic_runtime={k: v for k, v in (("base_urls", args.base_urls), ("api_key_env", args.api_key_env)) if v},
        judge_runtime={k: v for k, v in (("base_urls", args.judge_base_urls),
                                         ("api_key_env", args.judge_api_key_env)) if v},
        options=options,
    )


def cmd(args: argparse.Namespace) -> int:
    from rrbench.refine import summary
    from rrbench.refine.report import write_report
    from rrbench.refine.run import judge_of, prepare, run_stages
    from rrbench.session import EXIT

    job = job_of(args)
    task = prepare(job)[0]  # every name and argument checked before anything is written
    judge = judge_of(job, task)
    _preflight(job, judge)
    refined = run_stages(job)
    if refined.status != "complete":
        print(f"rrbench refine: a stage ended {refined.status}: run the same command again to resume",
              file=sys.stderr)
        return EXIT.get(refined.status, 1)
    code, judges = summary.judge_sets(job, refined, judge)
    if code != 0:
        print("rrbench refine: judging did not complete: run the same command again to resume", file=sys.stderr)
        return code
    result = summary.summarize(job, refined, judges)
    where = summary.folder(job, refined, judge)
    summary.write(where, result)
    page = write_report(where, result, job.output)
    print("\n".join(summary.lines(result)))
    print(f"summary: {where / summary.SUMMARY}\nreport: {page}")
    return 0


def _preflight(job: Any, judge: str) -> None:
    """What the critic and the judge need (weights, a key, a server), said before the first image is made."""
    from rrbench.doctor import preflight
    from rrbench.spec import RunSpec

    for model, args, runtime in ((job.critic, job.critic_args, job.critic_runtime),
                                 (judge, job.judge_args, job.judge_runtime)):
        spec = RunSpec(task=job.task, model=model, task_args=job.task_args, model_args=args, data=job.data)
        preflight([spec], {"base_urls": runtime.get("base_urls"), "api_key_env": runtime.get("api_key_env")})
