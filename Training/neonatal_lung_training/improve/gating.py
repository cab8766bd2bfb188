"""Give an improved model folder its domain gate: the parent kept whole, and the references that choose.

Why: a fine-tune on a clinic's corrected cases loses ~0.01 Dice on what the parent knew however it is tuned
(docs/improve.md, *Where the synthetic loss arises*: batch-norm statistics of the mixed batches move in the
first steps). The gate removes the loss instead of trading it: a scan like the corrected cases goes to the
fine-tuned network, any other scan to the untouched parent (``NeonatalLungSegLib/inference/gate``).

References, in the fine-tuned encoder's features: the fine-tune's training cases (never the held-out ones, so
the before/after figures test the gate too) against the parent's rehearsal cases. An improved model improved
again keeps its parent's fallback, so a lineage always falls back to one ungated model; its corrected
references are the new training folder's (features of another network cannot be compared), which is why the
Slicer module exports every correction into one folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from NeonatalLungSegLib.dataset.training_folder import CaseRecord, read_training_folder
from NeonatalLungSegLib.geometry import image_to_array
from NeonatalLungSegLib.inference.gate.routing import GATE_SLICES, scan_features
from NeonatalLungSegLib.json_input import dump_json
from NeonatalLungSegLib.models.gate_files import (FALLBACK_FOLDER, GATE_FILE, GateReferences, gate_record,
                                                  write_references)
from NeonatalLungSegLib.models.model_folder import CONFIG_NAME, ModelConfig, read_config, sha256_of
from NeonatalLungSegLib.models.network import build_checked


def base_model(parent: Path) -> Path:
    """The ungated model a lineage falls back to: the parent itself, or a gated parent's own fallback."""
    return parent / FALLBACK_FOLDER if read_config(parent).gate else parent


def case_features(encoder, config: ModelConfig, folder: Path, cases: Sequence[CaseRecord] | None = None
                  ) -> np.ndarray:
    """(cases, features) for ``cases`` of a training folder (all of them when None), as the engine sees them."""
    training = read_training_folder(folder)
    rows = []
    for record in (training.cases if cases is None else cases):
        image, _ = training.read_case(record)
        array, geometry = image_to_array(image)
        rows.append(scan_features(encoder, array.astype(np.float32, copy=False), geometry, config.input,
                                  GATE_SLICES))
    return np.array(rows, dtype=np.float32)


# Below this many corrected training cases the references are thin: in the ventilation experiment two sent 14 % of
# the held-out slices to the parent, and one sent 28 % of unlike synthetic slices to the fine-tuned network; from
# five on, 100 % and 0 % in every run (docs/improve-experiment.md).
FEW_REFERENCES = 5


def attach_gate(output: Path, parent: Path, data: Path, adapted: Sequence[CaseRecord],
                rehearsal: Sequence[Path], echo: Callable[..., None] = print) -> str:
    """Add the gate to the freshly written ``output`` folder; returns a line for the improvement record.

    Nothing is added without corrected and rehearsal cases to compare (the folder then stays one network)."""
    if not adapted or not rehearsal:
        return "no gate: it needs corrected training cases and rehearsal cases to tell apart"
    base = base_model(parent)
    base_config, config = read_config(base), read_config(output)
    network = build_checked(output, config).eval()
    if not hasattr(network, "encoder"):
        return f"no gate: the network ({config.network.architecture}) has no encoder to compare with"
    corrected = case_features(network.encoder, config, data, adapted)
    others = np.concatenate([case_features(network.encoder, config, Path(f)) for f in rehearsal])
    references = GateReferences(corrected, others)
    shutil.copytree(base, output / FALLBACK_FOLDER, ignore=shutil.ignore_patterns(".*"))
    write_references(output / GATE_FILE, references)
    record = gate_record(sha256_of(output / GATE_FILE), base_config.weights_sha256, GATE_SLICES, references)
    _rewrite_config(output, replace(config, gate=record))
    line = (f"domain gate: {len(corrected)} corrected against {len(others)} rehearsal case(s); other scans get "
            f"{base_config.name} {base_config.version}")
    echo(line, flush=True)
    return line


def thin_references_note(adapted_cases: int) -> str | None:
    """A reason for the decision when the gate learnt the clinic's scans from too few corrected cases."""
    if adapted_cases >= FEW_REFERENCES:
        return None
    return (f"The domain gate learnt the clinic's scans from {adapted_cases} corrected case(s): with fewer than "
            f"{FEW_REFERENCES} it can send some of them to the parent (docs/improve.md, Limits). Export more cases, "
            "then improve again.")


def _rewrite_config(folder: Path, config: ModelConfig) -> None:
    """model.json replaced atomically (the weights and their checksum are unchanged)."""
    text = dump_json(config.to_dict(), indent=2) + "\n"
    ModelConfig.from_dict(json.loads(text))  # never write a config the loader would refuse
    handle, staging = tempfile.mkstemp(prefix=".model.", suffix=".json", dir=folder)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(staging, 0o644)
    os.replace(staging, folder / CONFIG_NAME)
