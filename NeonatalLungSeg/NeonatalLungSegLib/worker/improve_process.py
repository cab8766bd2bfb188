"""``neonatal-lung-seg improve`` run as a separate process for a GUI: started in its own process group, its
printed lines read back from a log file at each poll (never waiting), cancelled by killing its whole tree, and
whatever a cancelled or failed run made (its model folder, improve's ``.run`` staging folder, the folder of
models it created, its registry entries) removed again.

The Slicer module's *Improve model* section runs the same command a terminal does (one code path); this is
only the process around it. Unlike the segmentation worker it is one process per run and has no protocol:
the command's own lines are the events (``epoch   3  loss ... val Dice 0.9123 ... 1.2 min``, one ``error:``
line and exit status 2 for bad input, ``improvement.json`` in the new folder at the end). Plain Python, no
NumPy or torch: the Slicer process imports it.
"""

from __future__ import annotations

import collections
import math
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .. import json_input
from ..errors import Cancelled, InputError, NeonatalLungSegError, OutputExistsError
from .process import child_environment, default_python, describe_exit, kill_process_tree, new_group_options, track

IMPROVE_MODULE = "neonatal_lung_training.improve.command"
RECORD_NAME = "improvement.json"  # what improve writes into the new folder (Training/.../improve/run.py)
MAX_RECORD_BYTES = 1 << 20
EPOCH_LINE = re.compile(r"^epoch\s+(?P<epoch>\d+)\s.*?\bval Dice\s+(?P<dice>\S+)\s"
                        r".*?\s(?P<minutes>\d+(?:\.\d+)?) min\b")
SCORING_PREFIXES = ("early stop", "held-out test cases", "scoring", "wrote ")
TRAINING_SHARE = 0.9  # of the progress bar: the time budget; the rest is scoring and writing the folder
READ_LIMIT = 1 << 20  # bytes of log read per poll


class ImproveError(NeonatalLungSegError):
    """The improve process failed; the message is its ``error:`` line (or how it ended)."""


def safe_name(text: str, fallback: str = "model") -> str:
    """Letters, digits, '.', '_' and '-' only, no leading dot or dash (a folder name on every system)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-.")
    return name[:80] or fallback


def models_folder_for(training_folder: Path | str) -> Path:
    """Where improved models of a training folder go: ``<training folder>-models`` beside it."""
    folder = Path(training_folder).expanduser()
    return folder.with_name(f"{folder.name}-models")


def new_model_folder(training_folder: Path | str, parent_name: str, now: float | None = None) -> Path:
    """``<training folder>-models/<parent>-improved-<YYYYmmdd-HHMMSS>``: a name nothing holds yet (neither the
    folder nor improve's ``.run`` staging folder beside it); a suffix is added when the second is taken."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    root, base = models_folder_for(training_folder), f"{safe_name(parent_name)}-improved-{stamp}"
    for number in range(1, 1000):
        candidate = root / (base if number == 1 else f"{base}-{number}")
        if not candidate.exists() and not staging_folder(candidate).exists():
            return candidate
    raise OutputExistsError(f"{root}: no free folder name for {base}")


def staging_folder(output: Path) -> Path:
    """improve's work folder beside the new model (``NEW.run``: generated cases, checkpoints, log, split)."""
    return output.with_name(output.name + ".run")


def improve_command(python: str, training_folder: Path, output: Path, parent: Path, minutes: float, device: str,
                    int8: bool = True, module: str = IMPROVE_MODULE) -> list[str]:
    command = [python, "-m", module, str(training_folder), "-o", str(output), "--model", str(parent),
               "--minutes", f"{float(minutes):g}", "--device", device]
    return command + ([] if int8 else ["--no-int8"])


@dataclass
class ImproveProgress:
    """What the printed lines say so far: the stage, the last epoch, its validation Dice and the time used."""

    budget_minutes: float
    stage: str = "starting"          # starting, preparing, training, scoring, finished
    epoch: int | None = None
    val_dice: float | None = None
    elapsed_minutes: float = 0.0     # training time, from the last epoch line
    last_line: str = ""

    @property
    def minutes_left(self) -> float:
        return max(0.0, self.budget_minutes - self.elapsed_minutes)

    @property
    def fraction(self) -> float:
        if self.stage == "finished":
            return 1.0
        if self.stage == "scoring":
            return TRAINING_SHARE + (1 - TRAINING_SHARE) / 2
        used = self.elapsed_minutes / self.budget_minutes if self.budget_minutes > 0 else 0.0
        return TRAINING_SHARE * min(1.0, max(0.0, used))

    def take(self, line: str) -> None:
        line = line.strip()
        if not line:
            return
        match = EPOCH_LINE.match(line)
        if match:
            self.stage, self.epoch = "training", int(match["epoch"])
            self.elapsed_minutes = float(match["minutes"])
            try:
                dice = float(match["dice"])
            except ValueError:
                dice = math.nan
            self.val_dice = dice if math.isfinite(dice) else None
            return
        self.last_line = line
        if line.lower().startswith(SCORING_PREFIXES) and self.stage in ("training", "scoring"):
            self.stage = "scoring"
        elif self.stage == "starting":
            self.stage = "preparing"

    def describe(self) -> str:
        """One line for a status label."""
        if self.stage == "training":
            dice = f", validation Dice {self.val_dice:.3f}" if self.val_dice is not None else ""
            return f"Epoch {self.epoch}{dice}, about {self.minutes_left:.1f} min left"
        if self.stage == "scoring":
            return "Scoring the parent and the new model on the held-out cases and the anchor sets..."
        if self.stage == "finished":
            return "Finished."
        return f"Preparing: {self.last_line}" if self.last_line else "Starting the improve process..."


class ImproveRun:
    """One ``improve`` process. ``start()`` returns at once; ``poll()`` reads what it printed since the last
    call and notices its exit; ``cancel()`` kills its process tree and removes what it made.

    ``module`` and ``extra_paths`` exist for tests (a fake command that prints epoch lines)."""

    def __init__(self, training_folder: Path | str, output: Path | str, parent: Path | str, minutes: float,
                 device: str = "auto", int8: bool = True, python: str | None = None,
                 module: str = IMPROVE_MODULE, extra_paths: Sequence[Path | str] = (),
                 env: dict[str, str] | None = None) -> None:
        self.training_folder, self.output, self.parent = Path(training_folder), Path(output), Path(parent)
        self.minutes, self.device, self.int8 = float(minutes), device, int8
        self.python, self.module = python or default_python(), module
        self.extra_paths = [str(p) for p in extra_paths]
        self.env = env
        self.progress = ImproveProgress(self.minutes)
        self.lines: collections.deque[str] = collections.deque(maxlen=200)
        self.process: subprocess.Popen | None = None
        self.session: Path | None = None
        self.log_path: Path | None = None
        self.returncode: int | None = None
        self.cancelled = False
        self.error: str | None = None
        self._offset, self._partial = 0, ""
        self._made_models_folder = False
        self._previous_default: Path | None = None
        self._undone = False

    # life cycle
    def start(self) -> ImproveRun:
        from ..models import registry

        if self.process is not None:
            return self
        for path in (self.output, staging_folder(self.output)):
            if path.exists():
                raise OutputExistsError(f"{path}: already exists; an improved model is a new folder")
        if not self.minutes > 0:
            raise InputError(f"the time budget must be > 0 minutes, got {self.minutes:g}")
        self._previous_default = registry.chosen_default()
        if not self.output.parent.exists():
            self.output.parent.mkdir(parents=True)
            self._made_models_folder = True
        self.session = Path(tempfile.mkdtemp(prefix="NeonatalLungSeg-improve-"))
        self.log_path = self.session / "improve.log"
        env = child_environment(self.env, self.extra_paths)
        command = improve_command(self.python, self.training_folder, self.output, self.parent, self.minutes,
                                  self.device, self.int8, self.module)
        try:
            with open(self.log_path, "ab") as log:  # its own process group: cancel kills the whole tree
                self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=subprocess.STDOUT, env=env, cwd=str(self.session),
                                                **new_group_options())
        except OSError as error:  # no such Python, no permission: nothing is left behind
            shutil.rmtree(self.session, ignore_errors=True)
            if self._made_models_folder:
                self.output.parent.rmdir()
            raise ImproveError(f"could not start {self.python}: {error.strerror or error}") from None
        track(self)
        return self

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def done(self) -> bool:
        return self.cancelled or self.returncode is not None

    @property
    def running(self) -> bool:
        return self.process is not None and not self.done

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0 and not self.cancelled

    def poll(self) -> None:
        """Take in the new lines and notice the exit (never waits). A failed run is undone here."""
        if self.process is None or self.done:
            return
        returncode = self.process.poll()  # first: every line written before the exit is read below
        self._read_log()
        if returncode is None:
            return
        self.returncode = returncode
        self._read_log(final=True)
        if returncode == 0:
            self.progress.stage = "finished"
            return
        errors = [line for line in self.lines if line.startswith("error:")]
        tail = " | ".join(list(self.lines)[-3:])
        self.error = errors[-1] if errors else (f"error: the improve process {describe_exit(returncode)}"
                                                + (f"; last output: {tail}" if tail else ""))
        self.undo()

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> bool:
        """Poll until done (scripts and tests); True when done."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(interval)
            self.poll()
        return True

    def cancel(self) -> None:
        """Kill the process tree now and undo what the run made; the registry and folders are as before."""
        if self.process is None or self.done:
            return
        self.cancelled = True
        kill_process_tree(self.process)
        self.returncode = self.process.returncode
        self.undo()

    terminate = cancel  # process.track: an exiting host kills the run too

    def close(self) -> None:
        """Cancel a run still going and remove the log's session folder."""
        self.cancel()
        if self.session is not None:
            shutil.rmtree(self.session, ignore_errors=True)

    def result(self) -> dict[str, Any]:
        """The new folder's ``improvement.json`` once the run succeeded; else raises Cancelled or ImproveError."""
        if self.cancelled:
            raise Cancelled("improve was cancelled; nothing was changed")
        if not self.done:
            raise ImproveError("improve is still running")
        if self.error:
            raise ImproveError(self.error)
        return read_record(self.output)

    # helpers
    def _read_log(self, final: bool = False) -> None:
        if self.log_path is None:
            return
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read(READ_LIMIT if not final else -1)
        except OSError:
            return
        self._offset += len(data)
        text = self._partial + data.decode("utf-8", errors="replace").replace("\r", "\n")
        *complete, self._partial = text.split("\n")
        if final and self._partial:
            complete, self._partial = [*complete, self._partial], ""
        for line in complete:
            if line.strip():
                self.lines.append(line.strip())
                self.progress.take(line)

    def undo(self) -> None:
        """Remove what this run made: the new folder and improve's staging folder (neither existed at start),
        the models folder if this run made it and it is empty, and the new folder's registry entries."""
        if self._undone or self.process is None:
            return
        self._undone = True
        for path in (self.output, staging_folder(self.output)):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists() or path.is_symlink():
                path.unlink()
        if self._made_models_folder:
            try:
                self.output.parent.rmdir()  # only when empty
            except OSError:
                pass
        _forget(self.output, self._previous_default)


def _forget(output: Path, previous_default: Path | None) -> None:
    """The registry as it was for ``output``: not remembered, and not the default (the previous one again)."""
    from ..models import registry

    try:
        resolved = output.expanduser().resolve()
        chosen = registry.chosen_default()
        if chosen is not None and chosen.expanduser().resolve() == resolved:
            try:
                registry.set_default(previous_default)
            except NeonatalLungSegError:  # the previous default no longer loads: the bundled model, as before
                registry.set_default(None)
        registry.forget(output)
    except OSError:
        pass


def read_record(folder: Path | str) -> dict[str, Any]:
    """A model folder's ``improvement.json`` (bounded strict JSON), checked for the fields a panel shows."""
    path = Path(folder) / RECORD_NAME
    record = json_input.read_json_file(path, MAX_RECORD_BYTES, "improvement record")
    decision = record.get("decision") if isinstance(record, dict) else None
    parent = record.get("parent") if isinstance(record, dict) else None
    if not isinstance(decision, dict) or not isinstance(parent, dict) or not isinstance(parent.get("folder"), str):
        raise InputError(f"{path}: not an improvement record (no decision or parent)")
    if not isinstance(decision.get("reasons", []), list) or not isinstance(decision.get("anchors", []), list):
        raise InputError(f"{path}: decision reasons and anchors must be lists")
    return record


def decision_text(record: dict[str, Any]) -> str:
    """The decision in the words ``improve`` prints at the end (promotion.Decision.summary)."""
    decision = record["decision"]
    head = ("Promoted: the new model is now the default." if decision.get("promoted")
            else "Kept as a candidate: the parent stays the default.")
    return " ".join([head, *(str(r) for r in decision.get("reasons", []))])


def score_rows(record: dict[str, Any]) -> list[tuple[str, int, float, float, float]]:
    """(cases, count, parent Dice, new Dice, change) for the held-out corrected cases and each anchor set; a
    gated model's anchor sets twice: with the fine-tuned network alone and with the domain gate."""
    decision = record["decision"]
    gated = [a for a in decision.get("gated_anchors") or [] if isinstance(a, dict)]
    alone = " (fine-tuned network alone)" if gated else ""
    scores = ([(decision["heldout"], "")] if isinstance(decision.get("heldout"), dict) else []) + \
        [(a, alone) for a in decision.get("anchors", []) if isinstance(a, dict)] + \
        [(a, " (with the domain gate)") for a in gated]
    rows = []
    for score, suffix in scores:
        try:
            parent, child = float(score["parent"]), float(score["child"])
            rows.append((str(score.get("title") or score.get("key") or "?") + suffix, int(score.get("cases", 0)),
                         parent, child, round(child - parent, 4)))
        except (KeyError, TypeError, ValueError):
            continue
    return rows
