"""``rrbench-train rl --config FILE [key.sub=value ...]``: diffusion RL of a generator (docs/rl.md).

Launch with ``accelerate launch -m rrbench_train.cli rl --config FILE`` for several processes. Running the same
command again resumes from the latest checkpoint in ``output_dir``.
"""

from __future__ import annotations

import argparse
import sys

from rrbench_train.rl.config import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="a YAML config, or a preset name (kontext-paper, "
                        "qwen-image-edit-2509-paper, flux-dev-t2i, qwen-image-t2i)")
    parser.add_argument("--max-steps", type=_positive, default=None, help="stop after this many more optimizer steps "
                        "(a checkpoint is written at the stop)")
    parser.add_argument("--quiet", action="store_true", help="no progress line per step (monitor.jsonl has them all)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.lr=1e-4 "
                        "generator.path=/models/flux-dev (values read as YAML)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of steps, at least 1; got {text!r}")
    return value


def main(args: argparse.Namespace) -> int:
    from rrbench_train.rl.trainer import INTERRUPTED, STOPPED, Interrupted, TrainingStopped, train

    config = load_config(args.config, args.overrides)
    try:
        return train(config, max_steps=args.max_steps, progress=not args.quiet)
    except TrainingStopped as exc:
        print(f"rrbench-train: stopped: {exc}", file=sys.stderr)
        return STOPPED
    except Interrupted as exc:
        print(f"rrbench-train: {exc}", file=sys.stderr)
        return INTERRUPTED
