"""``neonatal-lung-seg improve TRAINING_FOLDER -o NEW_MODEL [--model PARENT] [--minutes N] [--device ...]``.

The command the Slicer module's *Improve model* section runs in its own process: same function, same
defaults, same model. It prints one line per training epoch and the decision at the end; bad input is one
``error:`` line and exit status 2, with nothing written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from NeonatalLungSegLib.errors import exit_status

from .run import ImproveSettings, improve


def build_parser() -> argparse.ArgumentParser:
    defaults = ImproveSettings()
    parser = argparse.ArgumentParser(
        prog="neonatal-lung-seg improve",
        description="Fine-tune a model on the reviewed cases of a training folder (what the Slicer module's "
                    "Export writes), rehearsing what the parent knew; score parent and new model on held-out "
                    "corrected cases and anchor sets, and make the new model the default only when the rule "
                    "says so (otherwise it is kept as a candidate, with the reason).")
    parser.add_argument("data", type=Path, help="training folder (its reviewed cases are used)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the NEW model folder to write")
    parser.add_argument("--model", type=Path, default=None,
                        help="parent model folder (default: the current default model)")
    parser.add_argument("--minutes", type=float, default=defaults.minutes,
                        help=f"fine-tuning time budget (default {defaults.minutes:g})")
    parser.add_argument("--device", default=defaults.device, help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--no-int8", action="store_true", help="do not add the int8 network")
    parser.add_argument("--no-register", action="store_true",
                        help="do not remember the new folder in the model registry (nor make it the default)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.minutes > 0:
        print(f"error: --minutes must be > 0, got {args.minutes}", file=sys.stderr)
        return 2
    settings = ImproveSettings(minutes=args.minutes, device=args.device, seed=args.seed, int8=not args.no_int8)

    def run() -> int:
        improve(args.data, args.output, args.model, settings, register=not args.no_register)
        return 0

    return exit_status(run, also=(ValueError, FileExistsError))


if __name__ == "__main__":
    sys.exit(main())
