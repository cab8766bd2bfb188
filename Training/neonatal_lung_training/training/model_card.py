"""Write MODEL_CARD.md from a model folder's own config, so the card can never disagree with the model."""

from __future__ import annotations

from pathlib import Path

from NeonatalLungSegLib.models.model_folder import read_config

CARD_NAME = "MODEL_CARD.md"


_POLICY_WORDS = {"fixed_size": "stretched to that size whatever their field of view",
                 "keep_aspect": "after padding to a square field of view in mm, so nothing is distorted",
                 "body_crop": "after cropping to the body's in-plane extent and padding that to a square field of "
                              "view in mm, so nothing is distorted and a small body gets as many pixels as a large one"}


def _rows(values: dict) -> str:
    return "\n".join(f"| {key} | {value} |" for key, value in values.items())


def _int8_section(folder: Path, weights_sha256: str) -> str:
    """The card's line on the folder's int8 network (``network-int8.json``), when it has a current one: the
    default CPU path runs it on CPUs with VNNI, so a reader must know it exists and what it changes."""
    from NeonatalLungSegLib.models.int8_network import read_record

    record = read_record(folder)
    if record is None or record["weights_sha256"] != weights_sha256:
        return ""
    figures = "; ".join(f"{name}: right {lungs['right']:.4f}, left {lungs['left']:.4f}"
                        for name, lungs in record.get("dice_vs_fp32", {}).items())
    return (f"- int8 network: `{record['file']}` (SHA-256 `{record['sha256'][:16]}...`), the same network quantized "
            f"for CPUs with VNNI, where `auto` precision runs it with OpenVINO; layers kept float: "
            f"{', '.join(record.get('float_layers', []))}; Dice of its labels against fp32: {figures}.\n")


def _improvement_section(folder: Path) -> str:
    """The before/after table and the promotion decision of a model made by ``improve`` (improvement.json)."""
    from NeonatalLungSegLib.errors import InputError
    from NeonatalLungSegLib.json_input import read_json_file

    path = Path(folder) / "improvement.json"
    if not path.is_file():
        return ""
    try:
        record = read_json_file(path, 1 << 20, "improvement record")
        decision = record["decision"]
        gated = decision.get("gated_anchors") or []
        label = " (fine-tuned network alone)" if gated else ""
        rows = ([decision["heldout"]] if decision.get("heldout") else []) + \
            [{**r, "title": r["title"] + label} for r in decision["anchors"]] + \
            [{**r, "title": r["title"] + " (with the domain gate)"} for r in gated]
        table = "\n".join(f"| {r['title']} | {r['cases']} | {r['parent']:.4f} | {r['child']:.4f} | "
                          f"{r['change']:+.4f} | {_share(r.get('routed'))} |" for r in rows)
        parent = record["parent"]
        return (f"\n## Improvement from corrected cases\n\nFine-tuned from {parent['name']} {parent['version']} on "
                f"the reviewed cases of `{Path(record['training_folder']).name}` with `neonatal-lung-seg improve`; "
                f"status: **{decision['status']}**. Rule: {decision['rule']['text']}.\n\n"
                "| cases (whole-lung Dice) | n | parent | this model | change | to the fine-tuned network |\n"
                f"|---|---|---|---|---|---|\n{table}\n\n{_gate_text(record)}"
                + "\n".join(f"- {reason}" for reason in decision["reasons"]) + "\n")
    except (InputError, KeyError, TypeError, ValueError) as exc:
        return f"\n## Improvement from corrected cases\n\n{path.name} is unreadable ({exc}).\n"


def _share(routed) -> str:
    return "-" if routed is None else f"{routed:.0%}"


def _gate_text(record: dict) -> str:
    """What the domain gate (improve/gating.py) means for a user of this folder."""
    gate = record.get("gate")
    if not isinstance(gate, str) or not gate.startswith("domain gate"):
        return ""
    return (f"This folder is gated ({gate}): each scan goes to the fine-tuned network when its features (the fine-tuned "
            "encoder's) are nearer the corrected cases' centroid than the rehearsal cases', otherwise to the parent "
            "kept unchanged in `fallback/`; every result's `inference.gate` says which network segmented it. The "
            "held-out row is the gated model as users get it.\n\n")


def _boundary_line(config) -> str:
    """Which partial-volume boundary voxels the labels count as lung (inference/boundary.py)."""
    out = config.output
    if out.boundary_min_share > 0.5 and out.boundary_psf_sigma > 0:
        line = (f"- Boundary voxels: the expert convention: a voxel stays lung when its lung share through a "
                f"Gaussian PSF of {out.boundary_psf_sigma} voxel is at least {out.boundary_min_share}, so the "
                "partial-volume rim at the wall is left out as people drawing lungs leave it out (docs/engine.md); "
                "volumes.json gives the rim's volume (inference.boundary.rim_ml).\n")
    else:
        line = ("- Boundary voxels: the physical convention: every voxel the network finds at least half lung "
                "(no expert boundary convention set).\n")
    if out.boundary_signal_min_share > 0:
        line += (f"- Signal check: where the mask protrudes (what an opening with a 3-voxel ball removes), a surface "
                 f"voxel whose intensity lies nearer the surroundings' than a lung share of "
                 f"{out.boundary_signal_min_share} allows is tissue, and is peeled (two voxels deep at most; "
                 "volumes.json: inference.boundary.tissue_ml). A midline protrusion in the upper third of a lung "
                 "with air above it reaching 10 mm above the apices is trachea tied to an apex, and goes "
                 "(inference.boundary.airway_ml).\n")
    return line


def write_model_card(folder: Path) -> Path:
    config = read_config(folder)
    training, validation = dict(config.training), dict(config.validation)
    data = training.pop("data", "unknown")
    if "split_subjects" in training:  # hundreds of IDs: the card points to them instead of listing them
        training["split_subjects"] = "listed in model.json (training.split_subjects)"
    tested_on = validation.pop("data", "unknown")
    external = validation.pop("external", None)  # {data set: figures} scored after training, never trained on
    external_text = ""
    if isinstance(external, dict) and external:
        external_text = ("\n## External evaluation (cases never used in training)\n\n| data | figures |\n|---|---|\n"
                         + _rows(external) + "\n")
    net = config.network
    inp = config.input
    int8_text = _int8_section(folder, config.weights_sha256)
    if inp.spatial_dims == 3:
        shape = (f"stacked into a volume and segmented in sliding 3D windows of {inp.patch_slices} slices "
                 f"(overlap {inp.window_overlap}, Gaussian blending)")
        context_limit = (f"- Volumetric network: 3D context within a window of {inp.patch_slices} slices; very "
                         "different slice spacings change how much of the chest a window spans.")
    else:
        shape = "segmented one by one" + (f" with {inp.channels // 2} neighbour(s) each side as channels"
                                          if inp.channels > 1 else "")
        context_limit = "- Slice-wise 2D network: no 3D context beyond post-processing" + (
            " and the neighbouring slices given as channels." if inp.channels > 1 else ".")
    guidance = (f" plus {', '.join(inp.guidance)} (a click-refinement model: it corrects a mask where clicks "
                f"say, see docs/click-refinement.md)" if inp.guidance else "")
    parent = config.parent_version or 'none'
    policy = _POLICY_WORDS.get(config.input.in_plane_policy, config.input.in_plane_policy)
    text = f"""# Model card: {config.name} {config.version}

**{config.clinical_use}** This model has never been trained or tested on real neonatal MRI, because no
public neonatal lung MRI with lung masks could be reached by this project. Its figures describe only the
data named under "Training data" and "Evaluation" below; figures on real adult scans say whether it finds
lungs on real scanner images at all, not how it does on newborns.

## What it is
- Network: {net.library} `{net.architecture}` with {', '.join(f'{k}={v}' for k, v in net.args.items())};
  one sigmoid "lung" output; {config.input.channels} input channel(s){guidance}; parent version: {parent}.
- Input: the volume is reoriented to {config.input.canonical_orientation} and cut into slices across axis
  {config.input.slice_axis}; intensities are scaled by {config.input.intensity_method}
  ({config.input.lower_percentile} to {config.input.upper_percentile} percentiles); slices are resized to
  {list(config.input.in_plane_size)} ({policy}) and {shape}.
- Output labels after post-processing: {', '.join(f'{k} = {v}' for k, v in config.output.labels.items())}.
{_boundary_line(config)}- Weights: {config.weights_dtype} safetensors, SHA-256 `{config.weights_sha256}`.
{int8_text}
## Training data
{data}

| field | value |
|---|---|
{_rows(training)}

## Evaluation
On: {tested_on}.

Dice is volumetric, computed on the engine's final labels (after post-processing) against the reference
labels; per-lung figures only where the reference labels tell right from left.

| metric | value |
|---|---|
{_rows(validation)}
{external_text}{_improvement_section(folder)}
## Limits
- Trained on synthetic MRI and/or public CT only. Real UTE / gradient-echo neonatal MRI differs in noise, artefacts
  (motion, streaks), coil shading and pathology (BPD: dense atelectasis, cysts) in ways the generator only
  approximates. Expect lower accuracy on real scans; review every mask.
{context_limit}
- Right/left come from the image header's geometry: a wrong header gives swapped labels.
- Not a medical device; not for diagnosis or treatment decisions.
"""
    path = Path(folder) / CARD_NAME
    path.write_text(text, encoding="utf-8")
    return path
