"""A fake ``neonatal-lung-seg improve`` for the *Improve model* panel tests: same arguments, same printed lines,
same files, no torch, a second or so instead of minutes.

Run as ``python -m improve_fake DATA -o NEW --model PARENT --minutes N --device D`` (the panel's Improver with
``module="improve_fake"``). $NEONATAL_LUNG_SEG_FAKE_IMPROVE names a control folder: ``mode`` holds words that
choose the behaviour, the fake writes ``args.json``, ``pid`` and (gated) ``grandchild.pid`` and ``waiting``
there, and waits for ``gate`` when gated.

Modes: ``gate`` (stop after epoch 3 with a half-written model folder and a grandchild process, until ``gate``
exists), ``promote`` (the decision makes the new model the default), ``fail`` (print an ``error:`` line and
exit 2 after improve's staging folder exists, as a disk that fills up would), ``register-early`` (remember
the half-written folder in the registry before the gate, to test that Cancel forgets it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def control() -> Path:
    return Path(os.environ["NEONATAL_LUNG_SEG_FAKE_IMPROVE"])


def say(text: str) -> None:
    print(text, flush=True)


def epoch_line(epoch: int, dice: float, minutes: float) -> str:  # the format of training/train.py
    return (f"epoch {epoch:3d}  loss 0.5000  val loss 0.5000  val Dice {dice:.4f}  IoU 0.6000  lr 3.0e-04  "
            f"{minutes:.1f} min  *")


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="improve_fake")
    parser.add_argument("data", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-int8", action="store_true")
    parser.add_argument("--no-register", action="store_true")
    args = parser.parse_args(argv)
    folder = control()
    mode = set((folder / "mode").read_text(encoding="utf-8").split()) if (folder / "mode").exists() else set()
    write_atomically(folder / "args.json", json.dumps(sys.argv[1:]))
    write_atomically(folder / "pid", str(os.getpid()))

    from NeonatalLungSegLib.dataset.training_folder import read_training_folder
    from NeonatalLungSegLib.models import registry
    from NeonatalLungSegLib.models.model_folder import read_config

    parent = read_config(args.model)
    cases = [c for c in read_training_folder(args.data).cases if c.review_status in ("reviewed", "reference")]
    subjects = sorted({c.subject for c in cases})
    say(f"improve {parent.name} {parent.version} on {len(cases)} reviewed case(s) of {len(subjects)} subject(s); "
        f"held out: 1 subject(s)")
    run = args.output.with_name(args.output.name + ".run")
    (run / "train").mkdir(parents=True)
    (run / "train" / "log.csv").write_text("epoch,val_dice\n", encoding="utf-8")
    say("making the rehearsal and anchor cases (synthetic, from fixed seeds)...")
    if "fail" in mode:
        print(f"error: {run}: No space left on device", file=sys.stderr, flush=True)
        return 2
    budget = args.minutes
    for epoch in (1, 2, 3):
        say(epoch_line(epoch, 0.70 + 0.05 * epoch, budget * epoch / 4))
    if "gate" in mode:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        write_atomically(folder / "grandchild.pid", str(child.pid))
        args.output.mkdir()
        (args.output / "model.safetensors.partial").write_bytes(b"\0" * 64)  # a half-written model folder
        if "register-early" in mode:
            registry.remember(args.output)
        (folder / "waiting").touch()
        while not (folder / "gate").exists():
            time.sleep(0.01)
        child.kill()  # released: the grandchild was only there for Cancel to kill
        child.wait()
    say(epoch_line(4, 0.86, budget))
    say(f"early stop: time limit of {budget} min")
    say("scoring the parent and the new model...")
    shutil.copytree(args.model, args.output, dirs_exist_ok=True)
    (args.output / "model.safetensors.partial").unlink(missing_ok=True)
    config = json.loads((args.output / "model.json").read_text(encoding="utf-8"))
    config.update(version="0.1.0", parent_version=parent.version)
    config["training"] = {"parent": {"name": parent.name, "version": parent.version,
                                     "weights_sha256": parent.weights_sha256},
                          "split_subjects": {"train": subjects[:-1], "val": [], "test": subjects[-1:]}}
    (args.output / "model.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    promoted = "promote" in mode
    anchors = [{"key": "synthetic-neonatal", "title": "synthetic neonatal MRI, held-out anatomy family", "cases": 3,
                "parent": 0.95, "child": 0.948, "change": -0.002},
               {"key": "synthetic-randomised", "title": "domain-randomised chest MRI, held-out shape family",
                "cases": 3, "parent": 0.9, "child": 0.91 if promoted else 0.7, "change": 0.01 if promoted else -0.2}]
    reasons = ["Held-out corrected cases (1): Dice 0.050 -> 0.930 (+0.880, at least +0.010 needed).",
               "Kept what it knew on synthetic neonatal MRI, held-out anatomy family (3 cases): Dice 0.950 -> 0.948."]
    reasons.append("Kept what it knew on domain-randomised chest MRI, held-out shape family (3 cases): Dice 0.900 "
                   "-> 0.910." if promoted else "Forgot part of domain-randomised chest MRI, held-out shape family "
                   "(3 cases): Dice 0.900 -> 0.700 (-0.200; at most -0.010 allowed).")
    record = {"format": "neonatal-lung-seg-improvement",
              "parent": {"folder": str(args.model.resolve()), "name": parent.name, "version": parent.version},
              "training_folder": str(args.data.resolve()),
              "decision": {"status": "default" if promoted else "candidate", "promoted": promoted, "reasons": reasons,
                           "rule": {"min_gain": 0.01, "anchor_margin": 0.01},
                           "heldout": {"key": "heldout", "title": "the held-out corrected cases", "cases": 1,
                                       "parent": 0.05, "child": 0.93, "change": 0.88},
                           "anchors": anchors}}
    (args.output / "improvement.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    if not args.no_register:
        registry.remember(args.output)
        if promoted:
            registry.set_default(args.output)
    say(("Promoted: the new model is now the default. " if promoted else
         "Kept as a candidate: the parent stays the default. ") + " ".join(reasons))
    return 0


if __name__ == "__main__":
    sys.exit(main())
