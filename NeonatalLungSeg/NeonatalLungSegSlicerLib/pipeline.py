"""The steps behind the module's buttons, between MRML nodes and the engine library.

Segment is split so the GUI never blocks: ``makeRequest`` (GUI thread: the options, and the voxels as MRML
holds them, no copy and no cast: the worker casts) -> the worker process (``processRunner``; the engine only,
no MRML) -> ``applyResultSteps`` (GUI thread: the nodes, in steps the module's timer runs one per tick, so no
step blocks Slicer long on a large volume; ``applyResult`` runs them all at once for scripts).
Export reads the segmentation by segment *name*, writes through the library and checks what it wrote
against the segments again, so a swapped segment order or label value can never pass unnoticed.
"""

import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from NeonatalLungSegSlicerLib import labelmaps, mrmlNodes

DEVICES = {"auto": "auto", "GPU": "gpu", "CPU": "cpu"}


@dataclass
class SegmentationRequest:
    """Everything the worker needs, read off MRML on the GUI thread. ``array`` is MRML's own voxel memory
    (not a copy): the runner writes it to the worker's input file at once and drops it (``None`` after)."""

    volumeNodeId: str
    volumeName: str
    array: np.ndarray
    geometry: object
    modelFolder: Path
    device: str
    options: object
    withProbabilities: bool
    showProbabilities: bool
    reviewSliceCount: int
    replacePrevious: bool
    flipCheck: bool = False


@dataclass
class SegmentationOutputs:
    segmentationNode: object
    tableNode: object
    probabilityNode: object
    reviewSlices: list = field(default_factory=list)
    volumes: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    confidence: object = None  # NeonatalLungSegLib.inference.confidence.CaseConfidence


def engineDevice(choice):
    """Parameter-node device choice -> the worker's device name. 'gpu' is resolved in the worker (CUDA, else
    Apple MPS, else a clear error), so the Slicer process never imports torch to decide it."""
    return DEVICES.get(choice, choice)


def deviceMessage(choice):
    """One line for the panel: where the model will run, and a clear note when no GPU is present.

    torch is only asked once something else imported it (the first Segment): importing it just to fill a
    label would make opening the module take seconds, or fail before the user agreed to install it.
    """
    if "torch" not in sys.modules:
        if importlib.util.find_spec("torch") is None:
            return "PyTorch is not installed yet; Segment offers to install it."
        return {"CPU": "Runs on the CPU.", "GPU": "Runs on the GPU (checked when you click Segment)."}.get(
            choice, "Runs on a GPU when one is found, else on the CPU (checked when you click Segment).")
    import torch
    hasCuda = torch.cuda.is_available()
    hasMps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    gpuName = torch.cuda.get_device_name(0) if hasCuda else ("Apple GPU (MPS)" if hasMps else None)
    if choice == "CPU":
        return "Runs on the CPU."
    if gpuName is None:
        if choice == "GPU":
            return "No GPU is available on this computer: choose 'auto' or 'CPU' (the CPU takes seconds to a minute)."
        return "No GPU found: runs on the CPU."
    return f"Runs on {gpuName}."


def modelDescription(folder):
    """'name version: validation Dice right ..., left ... (data); parent, training data' or why the folder is
    not a model (from the model registry's entry, so the CLI's `models` says the same)."""
    from NeonatalLungSegLib.models.model_folder import read_config
    from NeonatalLungSegLib.models.registry import entry_for

    if not str(folder or "").strip():
        return "Select a model folder (one holding model.json), or pick a model above."
    entry = entry_for(Path(folder))
    if not entry.usable:
        return f"Not a usable model folder: {entry.problem}"
    dice = [f"{side} {value:.3f}" for side, value in (("right", entry.validation_dice_right),
                                                       ("left", entry.validation_dice_left)) if value is not None]
    if not dice and entry.validation_dice is not None:
        dice = [f"whole lung {entry.validation_dice:.3f}"]
    text = f"{entry.name} {entry.version}"
    if dice:
        text += ": validation Dice " + ", ".join(dice)
    if entry.validation_data:
        text += f" ({entry.validation_data})"
    lineage = [f"fine-tuned from {entry.parent}" if entry.parent else ""]
    if entry.training_cases is not None:
        lineage.append(f"{entry.training_cases} training cases")
    lineage = "; ".join(t for t in lineage if t)
    return text + (f"; {lineage}" if lineage else "") + ". " + read_config(Path(folder)).clinical_use


def makeRequest(parameterNode):
    """Validate the choices and copy the input off MRML; raises ValueError with a user-facing message."""
    from NeonatalLungSegLib.inference.postprocess import PostprocessOptions

    volumeNode = parameterNode.inputVolume
    if volumeNode is None:
        raise ValueError("Select an input volume.")
    if not str(parameterNode.modelFolder or "").strip():
        raise ValueError("Select a model folder (one holding model.json).")
    folder = Path(parameterNode.modelFolder)
    if not (folder / "model.json").is_file():
        raise ValueError(f"Select a model folder (one holding model.json); '{folder}' is not one.")
    options = PostprocessOptions(keep_largest_components=parameterNode.keepLargestComponents,
                                 fill_holes=parameterNode.fillHoles,
                                 split_left_right=parameterNode.splitLeftRight)
    count = int(parameterNode.reviewSliceCount)
    return SegmentationRequest(
        volumeNodeId=volumeNode.GetID(), volumeName=f"volume '{volumeNode.GetName()}'",
        array=mrmlNodes.volumeArray(volumeNode, copy=False),
        geometry=mrmlNodes.volumeGeometry(volumeNode), modelFolder=folder,
        device=engineDevice(parameterNode.device), options=options,
        withProbabilities=True,  # the confidence and the slices to review are computed from it
        showProbabilities=bool(parameterNode.showProbabilities), reviewSliceCount=count,
        replacePrevious=bool(parameterNode.replacePrevious), flipCheck=bool(parameterNode.flipCheck))


def applyResult(scene, request, result, model, confidence=None):
    """GUI-thread part, all at once (scripts, tests, the self-test): see ``applyResultSteps``."""
    return mrmlNodes.runSteps(applyResultSteps(scene, request, result, model, confidence))


PROBABILITY_SLICES_PER_STEP = 24  # float32 slices copied per step (512 x 512: 25 MB, tens of milliseconds)


def applyResultSteps(scene, request, result, model, confidence=None):
    """Generator: segmentation (+ model mask), volume table, probability volume, confidence and the slices to
    review, one short piece of work per ``next()``; its return value (StopIteration.value) is the
    SegmentationOutputs."""
    from NeonatalLungSegLib.dataset.review import slices_to_review
    from NeonatalLungSegLib.inference.confidence import measure_confidence

    volumeNode = scene.GetNodeByID(request.volumeNodeId)
    if volumeNode is None:
        raise ValueError("The input volume was removed from the scene while it was being segmented.")
    segmentationNode = mrmlNodes.prepareSegmentationNode(scene, volumeNode, request.replacePrevious)
    segmentationNode.SetAttribute(mrmlNodes.MODEL_ATTRIBUTE, json.dumps(model))
    yield
    box = labelmaps.boundingBox(result.labels)  # the lungs' box: all the scene keeps of the labels
    yield
    mrmlNodes.fillSegments(segmentationNode, volumeNode, result.labels, result.label_names, box)
    yield
    mrmlNodes.storeAILabels(scene, segmentationNode, volumeNode, result.labels, box)
    yield
    # The segments are the worker's labels, so its volumes are theirs (no whole-volume re-measure here).
    tableNode = mrmlNodes.updateVolumeTable(scene, segmentationNode, result.volumes)
    if confidence is None and result.probabilities is not None:
        confidence = measure_confidence(result.probabilities, request.geometry)
    probabilityNode = segmentationNode.GetNodeReference(mrmlNodes.PROBABILITY_ROLE)
    if request.showProbabilities and result.probabilities is not None:
        probabilityNode = yield from mrmlNodes.updateProbabilityVolumeSteps(
            scene, segmentationNode, volumeNode, result.probabilities, PROBABILITY_SLICES_PER_STEP)
    elif probabilityNode is not None:  # a replaced result must not leave the old run's map behind
        segmentationNode.RemoveNodeReferenceIDs(mrmlNodes.PROBABILITY_ROLE)
        scene.RemoveNode(probabilityNode)
        probabilityNode = None
    slices = []
    if request.reviewSliceCount > 0 and confidence is not None:
        slices = slices_to_review(confidence, request.geometry, request.reviewSliceCount)
    mrmlNodes.storeReviewSlices(segmentationNode, slices)
    mrmlNodes.storeConfidence(segmentationNode, confidence)
    return SegmentationOutputs(segmentationNode, tableNode, probabilityNode,
                               mrmlNodes.reviewSlices(segmentationNode), result.volumes, model, confidence)


def currentLabels(segmentationNode, volumeNode):
    """(label scheme, segment names in label order, uint8 labels, name -> bool mask) of a segmentation now.
    Read from the segments' own labelmaps (``labelmaps.readLabels``); overlapping lungs are a ValueError."""
    from NeonatalLungSegSlicerLib import labelmaps

    scheme = mrmlNodes.labelScheme(segmentationNode)
    names = mrmlNodes.EXPORT_ORDER[scheme]
    labels = labelmaps.readLabels(segmentationNode, volumeNode, names)
    masks = {name: labels == value for value, name in enumerate(names, start=1)}
    return scheme, names, labels, masks


def updateVolumeTable(scene, segmentationNode, volumeNode):
    """Volumes measured on the segmentation as it is now (after any correction), into its table node."""
    from NeonatalLungSegLib.inference.measure import measure_volumes

    scheme, _, labels, _ = currentLabels(segmentationNode, volumeNode)
    volumes = measure_volumes(labels, mrmlNodes.volumeGeometry(volumeNode), split=scheme == "right_left")
    return mrmlNodes.updateVolumeTable(scene, segmentationNode, volumes)


def checkAgainstSegments(labels, masks, names, errorType, what):
    for value, name in enumerate(names, start=1):
        differing = int(np.count_nonzero((labels == value) != masks[name]))
        if differing:
            raise errorType(f"{what}: label {value} differs from segment '{name}' in {differing} voxels; "
                            "nothing was reported as exported.")


def exportSummary(result):
    """The Export line of the panel: case, verification, Dice AI vs corrected and the correction effort."""
    changes = result.sidecar.get("changes_from_ai") or {}
    dice = changes.get("dice", {}).get("lungs")
    record = result.sidecar.get("correction") or {}
    effort = f"; {record['ai_clicks']} AI clicks, {record['manual_edits']} manual edits" if record else ""
    return (f"Exported {result.record.case_id} (verified voxel for voxel)"
            + (f"; Dice AI vs corrected {dice:.3f}" if dice is not None else "") + effort)


def exportForTraining(scene, segmentationNode, volumeNode, folder, reviewer, reviewStatus="reviewed", extra=None):
    """Write the corrected segmentation and its volume to a training folder; returns the library's ExportResult.

    The sidecar records the model that made the AI mask, its confidence in it, the reviewer and what the
    reviewer changed (plus ``extra`` sidecar fields, e.g. the correction record); ``reviewStatus``
    "unreviewed" exports an AI mask nobody checked (kept out of
    ``train --reviewed-only``)."""
    from NeonatalLungSegLib.dataset.export import ExportVerificationError, export_case

    folder = Path(str(folder or "")).expanduser()
    if not str(folder) or str(folder) == "." or not folder.is_absolute():
        raise ValueError("Choose a training folder (a full path) to export to.")
    scheme, names, labels, masks = currentLabels(segmentationNode, volumeNode)
    # Slicer's own labelmap export must agree with the segments read one by one, before anything is written.
    slicerLabels = mrmlNodes.exportLabelArray(scene, segmentationNode, volumeNode, names)
    checkAgainstSegments(slicerLabels, masks, names, ValueError, "Slicer's labelmap export")
    from NeonatalLungSegSlicerLib.measuring.measurements import exportDescriptors

    image, geometry = mrmlNodes.volumeArray(volumeNode), mrmlNodes.volumeGeometry(volumeNode)
    # The descriptors of the labels exported (the corrected mask), numbers only; None when not describable.
    extra = {"descriptors": exportDescriptors(image, slicerLabels, geometry), **(extra or {})}
    result = export_case(folder, image, slicerLabels, geometry, reviewer=reviewer,
                         model=mrmlNodes.modelInfo(segmentationNode),
                         ai_labels=mrmlNodes.aiLabels(segmentationNode, volumeNode), label_scheme=scheme,
                         review_status=reviewStatus,
                         extra={"ai_confidence": mrmlNodes.confidenceInfo(segmentationNode), **extra})
    # What is on disk now, against the segments as they are now (not the arrays that were written).
    _, _, _, masksNow = currentLabels(segmentationNode, volumeNode)
    checkAgainstSegments(result.label, masksNow, names, ExportVerificationError, str(result.label_path))
    return result
