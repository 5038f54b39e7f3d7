"""``rrbench-train``: the training command. Each subcommand lives in its own module, imported only when run."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from rrbench import UserError

# subcommand -> (module, one-line help). Each module has ``add_arguments(parser)`` and ``main(args) -> int``.
COMMANDS = {
    "anchor": ("rrbench_train.parrot.anchor", "PARROT 1: a teacher writes, for each human preference, the critique "
                                              "that explains it (resumable stage directory)"),
    "filter": ("rrbench_train.parrot.filtering", "PARROT 2: keep the anchored critiques that earn their label "
                                                 "(consistency predicates, each counted)"),
    "build-sft": ("rrbench_train.parrot.build_sft", "PARROT 3a: a TRL prompt-completion dataset (and a ShareGPT "
                                                    "export) from filtered critiques"),
    "import-sft": ("rrbench_train.parrot.import_sft", "read the released TIGER-Lab/RationalRewards-SFTData layout "
                                                      "into the same dataset"),
    "sft": ("rrbench_train.parrot.sft", "PARROT 3b: SFT of the critic with TRL's SFTTrainer (launch with "
                                        "`accelerate launch -m rrbench_train.cli sft ...` for several processes)"),
    "rl": ("rrbench_train.rl.cli", "diffusion RL of a generator (DiffusionNFT or Flow-GRPO, LoRA) with any rrbench "
                                   "reward model (`accelerate launch -m rrbench_train.cli rl --config FILE`)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rrbench-train", description="Produce rrbench reward models: PARROT "
                                     "(anchor -> filter -> build-sft -> sft). See docs/training.md.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        p.add_argument_group()  # filled when the subcommand is chosen (its module is imported then)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        parser.print_help() if command is None else parser.error(f"unknown command {command!r}")
        return 0 if command is None else 2
    module = importlib.import_module(COMMANDS[command][0])
    sub = argparse.ArgumentParser(prog=f"rrbench-train {command}", description=COMMANDS[command][1])
    module.add_arguments(sub)
    args = sub.parse_args(argv[argv.index(command) + 1:])
    try:
        return int(module.main(args))
    except UserError as exc:
        print(f"rrbench-train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished items are kept; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
