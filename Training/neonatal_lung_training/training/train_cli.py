"""Command-line options of ``train``: a config file plus one flag per config field, flags winning.

Flags are generated from the TrainConfig dataclass so the CLI, the YAML/JSON file and the saved run
config can never disagree about names or defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path

from .augment import AugmentConfig
from .config import TrainConfig, load_config_file

EXAMPLES = """examples:
  neonatal-lung-seg train --data my-folder --output models/my-model-0.1.0
  neonatal-lung-seg train --config Training/configs/ct-lung-slices.yaml
  neonatal-lung-seg train --data corrected-cases --init-model Resources/Models/neonatal-lung-unet-r50 \\
      --output models/finetuned --freeze-encoder
  torchrun --nproc-per-node 4 -m neonatal_lung_training.training.train --config my.yaml   # DDP, same code
Rerunning the same command resumes from the run folder's last checkpoint."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neonatal-lung-seg train", epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Train or fine-tune a model folder on a training folder.")
    parser.add_argument("--config", type=Path, help="YAML or JSON file with TrainConfig fields")
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name == "augment":
            continue
        flag = f"--{f.name.replace('_', '-')}"
        default = TrainConfig().__dict__[f.name]
        kind = hints[f.name]
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=f"(default: {default})")
        elif typing.get_origin(kind) is tuple:
            item = typing.get_args(kind)[0]
            parser.add_argument(flag, type=item, nargs="+", default=None, help=f"(default: {list(default)})")
        else:
            parser.add_argument(flag, type=kind, default=None, help=f"(default: {default!r})")
    parser.add_argument("--no-augment", action="store_true", help="train on plain slices")
    parser.add_argument("--finish-now", action="store_true",
                        help="write the model folder from the run's best checkpoint now, without loading the "
                             "data or training further (a run stopped early for time); same settings as the run")
    return parser


def parse_config(argv: list[str] | None) -> TrainConfig:
    return parse(argv)[0]


def parse(argv: list[str] | None) -> tuple[TrainConfig, bool]:
    """(config, finish_now)."""
    args = vars(_parser().parse_args(argv))
    values = load_config_file(args.pop("config")) if args.get("config") else {}
    no_augment = args.pop("no_augment")
    finish_now = args.pop("finish_now")
    values.update({k: v for k, v in args.items() if v is not None})
    config = TrainConfig(**values)
    if no_augment:
        config.augment = dataclasses.replace(config.augment, enabled=False)
    if not isinstance(config.augment, AugmentConfig):
        raise ValueError("augment must be a mapping of AugmentConfig fields")
    return config, finish_now
