"""`neonatal-lung-seg improve`: fine-tune with rehearsal, judge with the promotion rule, write and register.

A tiny parent trained on toy chests (dark lungs in a bright body) plays the bundled model; the "clinic" has a
new domain, the same chests with inverted contrast (bright lungs in a dark body, as in ventilation MRI),
which the parent fails on. Rehearsal and anchor sets are toy folders of the parent's own domain.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import SimpleITK as sitk

from NeonatalLungSegLib.dataset.training_folder import add_case, read_training_folder
from NeonatalLungSegLib.models import registry
from NeonatalLungSegLib.models.model_folder import read_config
from neonatal_lung_training.improve.anchors import AnchorSet
from neonatal_lung_training.improve.gating import FEW_REFERENCES
from neonatal_lung_training.improve.promotion import Rule, Score, decide
from neonatal_lung_training.improve.run import ImproveSettings, holdout_subjects, improve
from neonatal_lung_training.training.train import main as train_main

from training_fixtures import TINY_TRAIN_ARGS, chest_arrays


def chest(seed: int, inverted: bool = False, shape=(8, 32, 32)) -> tuple[sitk.Image, sitk.Image]:
    array, labels = chest_arrays(seed, shape, inverted)
    out = sitk.GetImageFromArray(array)
    out.SetSpacing((1.0, 1.0, 2.0))
    lab = sitk.GetImageFromArray(labels)
    lab.CopyInformation(out)
    return out, lab


def chest_folder(root: Path, seeds, inverted: bool = False, shuffled: bool = False,
                 status: str = "reviewed") -> Path:
    seeds = list(seeds)
    labels = [chest(s, inverted)[1] for s in seeds]
    if shuffled:  # each image gets the next case's label: a deliberately broken "correction"
        labels = labels[1:] + labels[:1]
    for seed, label in zip(seeds, labels):
        image = chest(seed, inverted)[0]
        add_case(root, image, label, f"chest{seed:03d}", review_status=status, source="test",
                 description="toy chests for improve tests")
    return root


@pytest.fixture(scope="module")
def toys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("improve")
    known = chest_folder(root / "known", range(0, 12), status="reference")
    parent = root / "parent"
    assert train_main(["--data", str(known), "--output", str(parent), *TINY_TRAIN_ARGS, "--epochs", "12",
                       "--version", "1.0.0", "--learning-rate", "0.003", "--seed", "1"]) == 0
    return {"root": root, "known": known, "parent": parent,
            "anchor": chest_folder(root / "anchor", range(100, 104), status="reference"),
            "clinic": chest_folder(root / "clinic", range(200, 210), inverted=True),
            "broken": chest_folder(root / "broken", range(200, 210), inverted=True, shuffled=True)}


# a budget in steps, not minutes: the same fine-tune however busy the machine is (the wall time only as a guard)
SETTINGS = ImproveSettings(minutes=10.0, max_epochs=6, learning_rate=3e-3, batch_size=8, steps_per_epoch=10,
                           device="cpu", int8=False)


def _improve(toys: dict[str, Path], data: str, out: Path, registry_file: Path, monkeypatch) -> object:
    monkeypatch.setenv(registry.REGISTRY_ENV, str(registry_file))
    anchors = [AnchorSet("toys", "the parent's own toy chests", toys["anchor"])]
    return improve(toys[data], out, toys["parent"], SETTINGS, rehearsal=[toys["known"]], anchors=anchors)


# --- the rule --------------------------------------------------------------------------------------------

def test_the_rule_promotes_only_a_better_model_that_forgets_nothing() -> None:
    anchors = [Score("a", "anchor A", 3, 0.95, 0.945), Score("b", "anchor B", 3, 0.90, 0.91)]
    good = decide(Score("heldout", "held-out", 2, 0.05, 0.93), anchors)
    assert good.promoted and good.status == "default" and "0.050 -> 0.930" in good.reasons[0]
    forgot = decide(Score("heldout", "held-out", 2, 0.05, 0.93), [Score("a", "anchor A", 3, 0.95, 0.10)])
    assert not forgot.promoted and "Forgot part of anchor A" in forgot.summary()
    same = decide(Score("heldout", "held-out", 2, 0.90, 0.905), anchors)
    assert not same.promoted and "Not better on the held-out" in same.reasons[0]
    alone = decide(None, anchors)
    assert not alone.promoted and "No held-out corrected case" in alone.reasons[0]
    strict = decide(Score("heldout", "held-out", 2, 0.05, 0.93), anchors, Rule(anchor_margin=0.001))
    assert not strict.promoted  # anchor A lost 0.005
    inconsistent = decide(Score("heldout", "held-out", 2, 0.0, 0.64), anchors)  # better, but only an average shape
    assert not inconsistent.promoted and "Agrees with the held-out corrections only at Dice 0.640" in \
        inconsistent.summary()
    record = json.loads(json.dumps(good.to_dict()))
    assert record["status"] == "default" and record["rule"]["min_gain"] == 0.01 and "beats the parent" in \
        record["rule"]["text"]
    with pytest.raises(ValueError):
        Rule(min_gain=-0.1)


def test_holdout_is_seeded_at_least_one_subject_and_none_for_one() -> None:
    subjects = [f"s{i}" for i in range(10)]
    assert holdout_subjects(subjects) == holdout_subjects(list(reversed(subjects)))
    assert len(holdout_subjects(subjects)) == 2 and len(holdout_subjects(subjects[:3])) == 1
    assert holdout_subjects(["only"]) == []


# --- end to end ------------------------------------------------------------------------------------------

def test_improve_adapts_to_a_new_domain_writes_a_complete_folder_and_registers_it(toys, tmp_path, monkeypatch):
    out = tmp_path / "improved"
    decision = _improve(toys, "clinic", out, tmp_path / "registry.json", monkeypatch)
    config, parent = read_config(out), read_config(toys["parent"])
    assert config.parent_version == "1.0.0" and config.training["parent"]["weights_sha256"] == parent.weights_sha256
    assert config.training["training_folder_manifest_sha256"] == read_training_folder(toys["clinic"]).manifest_sha256
    assert config.training["rehearsal"]["batch_fraction"] == SETTINGS.rehearsal_fraction
    assert config.training["label_boundary"] == SETTINGS.label_boundary == "network"
    assert config.training["anchor_decay"] == SETTINGS.anchor_decay  # the lineage says how it was held
    assert ImproveSettings().anchor_decay == 30.0  # the measured default
    assert set().union(*config.training["split_subjects"].values()) <= {f"chest{s:03d}" for s in range(200, 210)}
    assert config.training["split_subjects"]["test"] == holdout_subjects([f"chest{s:03d}" for s in range(200, 210)])
    record = json.loads((out / "improvement.json").read_text(encoding="utf-8"))
    assert record["decision"]["status"] == decision.status and record["parent"]["version"] == "1.0.0"
    held = decision.heldout
    assert held.cases == 2 and held.child > held.parent + 0.2, held  # the new domain was learned
    card = (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "Improvement from corrected cases" in card and f"{held.child:.4f}" in card
    assert out.resolve() in registry.remembered_paths()
    assert (registry.chosen_default() == out.resolve()) is decision.promoted
    assert not list((out.with_name(out.name + ".run") / "train").glob("*.pt"))  # checkpoints tidied


def test_the_rule_refuses_a_broken_fine_tune(toys, tmp_path, monkeypatch):
    """Labels shuffled between cases: the result must not become the default, and the reason is shown."""
    registry_file = tmp_path / "registry.json"
    decision = _improve(toys, "broken", tmp_path / "broken-model", registry_file, monkeypatch)
    assert not decision.promoted and decision.status == "candidate"
    assert any(r.startswith(("Not better", "Agrees with the held-out corrections only", "Forgot"))
               for r in decision.reasons), decision.reasons
    assert registry.chosen_default() is None  # the parent (here: the bundled model) stays the default
    assert (tmp_path / "broken-model").resolve() in registry.remembered_paths()  # kept as a candidate


@pytest.mark.parametrize("problem", ["no-reviewed", "exists", "missing-folder", "refine-parent"])
def test_bad_input_is_one_line_and_nothing_is_written(problem, toys, tmp_path, tiny_refine_folder, capsys,
                                                       monkeypatch):
    from NeonatalLungSegLib.cli.main import main

    monkeypatch.setenv(registry.REGISTRY_ENV, str(tmp_path / "registry.json"))
    data, parent, out = toys["clinic"], toys["parent"], tmp_path / "new"
    if problem == "no-reviewed":
        data = chest_folder(tmp_path / "unreviewed", range(300, 303), status="unreviewed")
    elif problem == "exists":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    elif problem == "missing-folder":
        data = tmp_path / "nowhere"
    else:
        parent = tiny_refine_folder
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(["improve", str(data), "-o", str(out), "--model", str(parent), "--minutes", "0.1", "--device", "cpu"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("error:"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert problem != "exists" or (out / "keep.txt").read_text(encoding="utf-8") == "mine"
    assert not (tmp_path / "registry.json").exists()


def test_rehearsal_towards_the_parents_own_output(toys, tmp_path, monkeypatch) -> None:
    """Distillation: the rehearsal slices are trained towards the parent's probabilities, computed once from the
    parent before any step; on its own domain they agree with the labels where it is right, the run records it."""
    from dataclasses import replace

    import torch

    from NeonatalLungSegLib.inference.engine import Segmenter
    from neonatal_lung_training.training.config import TrainConfig
    from neonatal_lung_training.training.slices import volume_slices
    from neonatal_lung_training.training.train import _parent_probabilities

    parent = Segmenter.load(toys["parent"], device="cpu", precision="fp32")
    folder = read_training_folder(toys["known"])
    record = folder.cases[0]
    slices = volume_slices(*folder.read_case(record), parent.config.input, 0)
    targets = _parent_probabilities(parent.network, slices, torch.device("cpu"), "fp32", False)
    assert targets.shape == slices.targets.shape and targets.dtype == slices.targets.dtype
    assert 0 <= float(targets.min()) and float(targets.max()) <= 1 and targets.std() > 0.1  # soft, not a copy
    agree = ((targets > 0.5) == (slices.targets > 0.5)).float().mean()
    assert agree > 0.9, agree  # the parent is good on its own domain
    problems = TrainConfig(data="d", output="o", rehearsal_data=("r",), rehearsal_fraction=0.5,
                           rehearsal_targets="parent").problems()
    assert any("needs init_model" in p for p in problems)
    assert any("labels or parent" in p for p in TrainConfig(data="d", output="o", rehearsal_targets="x").problems())
    monkeypatch.setenv(registry.REGISTRY_ENV, str(tmp_path / "registry.json"))
    out = tmp_path / "distilled"
    anchors = [AnchorSet("toys", "the parent's own toy chests", toys["anchor"])]
    improve(toys["clinic"], out, toys["parent"], replace(SETTINGS, rehearsal_targets="parent"),
            rehearsal=[toys["known"]], anchors=anchors)
    assert read_config(out).training["rehearsal"]["targets"] == "parent"


def test_corrected_labels_are_learned_in_the_networks_own_convention(toys) -> None:
    """A parent with the expert boundary convention: the clinic's masks (drawn the expert's way) are grown to the
    network's convention before training, so the engine's convention gives them back instead of taking the
    rim off twice (on real ventilation MRI, learning them as drawn cost 0.007 Dice at N = 20)."""
    from dataclasses import replace

    import numpy as np
    import torch

    from NeonatalLungSegLib.inference.boundary import keep_expert_share
    from neonatal_lung_training.training.config import TrainConfig
    from neonatal_lung_training.training.dataset import load_slices
    from neonatal_lung_training.training.train import _label_boundary

    plain = read_config(toys["parent"])
    assert plain.output.boundary_min_share == 0.5  # the toy parent follows the physical convention
    expert = replace(plain, output=replace(plain.output, boundary_min_share=0.75, boundary_psf_sigma=0.7))
    quiet = lambda *a, **k: None  # noqa: E731
    config = TrainConfig(data="d", output="o", label_boundary="network")
    assert _label_boundary(config, plain, quiet) is None  # nothing to invert
    assert _label_boundary(replace(config, label_boundary="as_drawn"), expert, quiet) is None
    convert = _label_boundary(config, expert, quiet)
    folder = read_training_folder(toys["clinic"])
    image, label = folder.read_case(folder.cases[0])
    grown = convert(label)
    assert grown.GetSize() == label.GetSize() and grown.GetSpacing() == label.GetSpacing()
    assert grown.GetPixelID() == label.GetPixelID()
    drawn, learned = sitk.GetArrayFromImage(label), sitk.GetArrayFromImage(grown)
    assert learned.astype(bool).sum() > drawn.astype(bool).sum()
    assert not (drawn.astype(bool) & ~learned.astype(bool)).any()
    # the engine's convention on the grown labels comes closer to what was drawn than on the drawn ones (on
    # these small toy lungs not exactly: the sphere in Testing/lib/test_boundary.py checks the round trip)
    back, twice = keep_expert_share(learned, 0.75, 0.7), keep_expert_share(drawn, 0.75, 0.7)
    assert (back.astype(bool) != drawn.astype(bool)).sum() < (twice.astype(bool) != drawn.astype(bool)).sum()
    as_drawn = load_slices(folder, folder.cases[:2], expert.input, 0.3, 0)
    converted = load_slices(folder, folder.cases[:2], expert.input, 0.3, 0, label_transform=convert)
    assert converted.images.shape == as_drawn.images.shape and torch.equal(converted.images, as_drawn.images)
    assert float(converted.targets.sum()) > float(as_drawn.targets.sum())
    assert np.isfinite(float(converted.targets.sum()))
    assert any("as_drawn or network" in p for p in TrainConfig(data="d", output="o", label_boundary="x").problems())


def test_the_gate_keeps_the_parent_for_its_domain_and_a_lineage_falls_back_to_one_model(toys, tmp_path,
                                                                                        monkeypatch) -> None:
    """The improved folder carries the parent whole in fallback/ and references of the training cases (not the
    held-out ones); the parent's own chests get exactly the parent's labels, the clinic's get the fine-tuned
    network; improving that folder again keeps the same ungated fallback, with the new folder's references."""
    import numpy as np

    from NeonatalLungSegLib.inference.engine import Segmenter
    from NeonatalLungSegLib.models.gate_files import FALLBACK_FOLDER

    out = tmp_path / "gated"
    decision = _improve(toys, "clinic", out, tmp_path / "registry.json", monkeypatch)
    config, parent = read_config(out), read_config(toys["parent"])
    heldout = holdout_subjects([f"chest{s:03d}" for s in range(200, 210)])
    assert config.gate["adapted_cases"] == 10 - len(heldout)
    assert config.gate["fallback_cases"] == len(read_training_folder(toys["known"]).cases)
    assert read_config(out / FALLBACK_FOLDER).weights_sha256 == parent.weights_sha256 == \
        config.gate["fallback_weights_sha256"]
    record = json.loads((out / "improvement.json").read_text(encoding="utf-8"))
    assert record["gate"].startswith("domain gate: 8 corrected against 12 rehearsal")
    assert not any("fewer than" in reason for reason in decision.reasons)
    assert record["heldout_fine_tuned_alone"]["child"] > record["heldout_fine_tuned_alone"]["parent"]
    assert decision.heldout.routed == 1.0, decision.reasons  # both held-out clinic chests to the fine-tuned one
    assert decision.gated_anchors and decision.gated_anchors[0].routed == 0.0
    assert decision.gated_anchors[0].change == 0.0  # the parent's own chests: the parent's labels exactly
    assert "with the domain gate" in (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    gated = Segmenter.load(out, device="cpu", precision="fp32")
    original = Segmenter.load(toys["parent"], device="cpu", precision="fp32")
    image, _ = chest(103)  # an anchor chest: the parent's domain
    mine, theirs = gated.segment_image(image), original.segment_image(image)
    assert mine.inference["gate"]["network"] == "parent"
    np.testing.assert_array_equal(mine.labels, theirs.labels)
    assert gated.segment_image(chest(209, inverted=True)[0]).inference["gate"]["network"] == "fine-tuned"

    more = chest_folder(tmp_path / "more", range(220, 225), inverted=True)
    again = tmp_path / "gated-again"
    improve(more, again, out, SETTINGS, rehearsal=[toys["known"]],
            anchors=[AnchorSet("toys", "the parent's own toy chests", toys["anchor"])])
    lineage = read_config(again)
    assert lineage.parent_version == config.version and lineage.training["parent"]["weights_sha256"] == \
        config.weights_sha256  # fine-tuned from the fine-tuned network
    assert lineage.gate["fallback_weights_sha256"] == parent.weights_sha256  # one ungated model at the root
    assert not (again / FALLBACK_FOLDER / FALLBACK_FOLDER).exists()
    new_train = 5 - len(holdout_subjects([f"chest{s:03d}" for s in range(220, 225)]))
    assert lineage.gate["adapted_cases"] == new_train  # in the new network's features: the new folder's cases
    assert new_train < FEW_REFERENCES  # so the record warns that the gate's references are thin
    reasons = json.loads((again / "improvement.json").read_text(encoding="utf-8"))["decision"]["reasons"]
    assert f"from {new_train} corrected case(s): with fewer than {FEW_REFERENCES}" in reasons[-1]


def test_without_the_gate_the_folder_is_one_network(toys, tmp_path, monkeypatch) -> None:
    from dataclasses import replace

    from NeonatalLungSegLib.models.gate_files import FALLBACK_FOLDER, GATE_FILE

    out = tmp_path / "ungated"
    monkeypatch.setenv(registry.REGISTRY_ENV, str(tmp_path / "registry.json"))
    decision = improve(toys["clinic"], out, toys["parent"], replace(SETTINGS, gate=False, max_epochs=1),
                       rehearsal=[toys["known"]], anchors=[AnchorSet("toys", "toy chests", toys["anchor"])])
    assert not read_config(out).gate and not (out / GATE_FILE).exists() and not (out / FALLBACK_FOLDER).exists()
    assert not decision.gated_anchors and decision.heldout.routed is None
    assert json.loads((out / "improvement.json").read_text(encoding="utf-8"))["gate"] == "not asked for"
