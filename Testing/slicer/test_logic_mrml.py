"""The module's Logic on REAL Slicer MRML (slicer-core wheel): Segment on the bundled sample with the bundled
model, the result's nodes, corrections through vtkSlicerSegmentEditorLogic, export for retraining.

One segmentation of the sample is shared by the tests of this file (module-scoped fixture): the bundled
model takes ~10 s on a 2-core CPU.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile

import numpy as np
import pytest

import slicer_harness

slicer = slicer_harness.slicer
REPO = slicer_harness.REPO
SAMPLE = REPO / "Resources" / "Sample" / "sample-neonatal-chest.nii.gz"
MODEL = REPO / "Resources" / "Models" / "neonatal-lung-unet-r50"
STORED = json.loads((MODEL / "model.json").read_text(encoding="utf-8"))  # identity of the bundled model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def module():
    return slicer_harness.import_module()


@pytest.fixture(scope="module")
def run(module):
    """Segment the sample once through the Logic (worker process, as the GUI does), keeping the job."""
    from NeonatalLungSegSlicerLib import resources

    scene = slicer_harness.mrml_environment()["scene"]
    logic = module.NeonatalLungSegLogic()
    volumeNode = resources.loadSampleVolume(scene)
    parameterNode = logic.getParameterNode()
    parameterNode.inputVolume = volumeNode
    parameterNode.modelFolder = str(MODEL)
    parameterNode.device = "CPU"
    parameterNode.showProbabilities = True
    parameterNode.reviewSliceCount = 5
    job = logic.startSegmentation(parameterNode)
    seen = []
    while not job.wait(0.05):
        seen.append(job.progress)
    outputs = logic.finishSegmentation(job, parameterNode)
    yield {"logic": logic, "scene": scene, "volume": volumeNode, "parameterNode": parameterNode, "job": job,
            "outputs": outputs, "progress": seen}
    logic.close()


@pytest.fixture(scope="module")
def cli_labels(tmp_path_factory):
    """The CLI's label file for the sample (a separate process path: read_volume + segment_image)."""
    import SimpleITK as sitk

    from NeonatalLungSegLib.cli.main import main

    out = tmp_path_factory.mktemp("cli")
    assert main(["segment", str(SAMPLE), "-o", str(out), "--device", "cpu"]) == 0
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "sample-neonatal-chest_lungs.nii.gz")))
    volumes = json.loads((out / "sample-neonatal-chest_volumes.json").read_text(encoding="utf-8"))
    return labels, volumes


def segment_masks(segmentationNode, volumeNode):
    from NeonatalLungSegSlicerLib import mrmlNodes

    return mrmlNodes.segmentArrays(segmentationNode, volumeNode, (mrmlNodes.RIGHT_LUNG, mrmlNodes.LEFT_LUNG))


def test_segment_matches_cli_voxel_for_voxel(run, cli_labels):
    labels, _ = cli_labels
    segmentation = run["outputs"].segmentationNode
    names = [segmentation.GetSegmentation().GetNthSegment(i).GetName() for i in range(2)]
    assert names == ["Right lung", "Left lung"]
    masks = segment_masks(segmentation, run["volume"])
    assert np.array_equal(masks["Right lung"], labels == 1)
    assert np.array_equal(masks["Left lung"], labels == 2)
    assert masks["Right lung"].sum() > 50_000 and masks["Left lung"].sum() > 30_000


def test_segmentation_sits_on_the_input_geometry(run):
    import vtk

    segmentation, volume = run["outputs"].segmentationNode, run["volume"]
    geometry = segmentation.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    image = slicer.vtkOrientedImageData()
    slicer.vtkSegmentationConverter.DeserializeImageGeometry(geometry, image)
    want, got = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(want)
    image.GetImageToWorldMatrix(got)
    assert np.allclose(slicer.util.arrayFromVTKMatrix(got), slicer.util.arrayFromVTKMatrix(want), atol=1e-6)
    assert image.GetDimensions() == volume.GetImageData().GetDimensions()
    assert segmentation.GetNodeReference("NeonatalLungSegSourceVolume") is volume


def test_segments_carry_snomed_terminology_colours_and_3d_surfaces_on_request(run):
    segmentation = run["outputs"].segmentationNode.GetSegmentation()
    right = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("Right lung"))
    left = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("Left lung"))
    for segment, laterality in ((right, "SCT^24028007^Right"), (left, "SCT^7771000^Left")):
        entry = segment.GetTerminology()
        assert "SCT^123037004^Anatomical Structure" in entry and "SCT^39607008^Lung" in entry
        assert laterality in entry
    assert np.allclose(right.GetColor(), (197 / 255, 165 / 255, 145 / 255))
    assert not np.allclose(right.GetColor(), left.GetColor())
    display = run["outputs"].segmentationNode.GetDisplayNode()
    assert display.GetVisibility() and display.GetVisibility2DFill()
    # 3D on request only: closed surfaces would be regenerated on every paint stroke of a correction.
    assert not segmentation.ContainsRepresentation("Closed surface")
    assert run["logic"].showIn3D(run["outputs"].segmentationNode)
    assert segmentation.ContainsRepresentation("Closed surface") and display.GetVisibility3D()
    segmentation.RemoveRepresentation("Closed surface")


def test_volume_table_matches_cli_volumes(run, cli_labels):
    from NeonatalLungSegSlicerLib import mrmlNodes

    _, volumes = cli_labels
    table = mrmlNodes.tableVolumes(run["outputs"].tableNode)
    assert run["parameterNode"].volumeTable is run["outputs"].tableNode
    assert table["Right lung"] == (round(volumes["right_lung"]["volume_ml"], 3), volumes["right_lung"]["voxels"])
    assert table["Left lung"] == (round(volumes["left_lung"]["volume_ml"], 3), volumes["left_lung"]["voxels"])
    assert table["Total"][1] == volumes["total"]["voxels"]


def test_progress_probability_volume_and_review_slices(run):
    outputs = run["outputs"]
    assert run["progress"] == sorted(run["progress"]) and run["job"].progress == 1.0
    probability = outputs.probabilityNode
    assert probability is run["parameterNode"].probabilityVolume
    values = slicer.util.arrayFromVolume(probability)
    assert values.dtype == np.float32 and 0.0 <= values.min() and values.max() <= 1.0
    masks = segment_masks(outputs.segmentationNode, run["volume"])
    assert (values[masks["Right lung"]] > 0.5).mean() > 0.95
    assert len(outputs.reviewSlices) == 5
    scores = [entry["score"] for entry in outputs.reviewSlices]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    # The list is the confidence module's least confident slices; the case confidence travels with the node.
    from NeonatalLungSegLib.inference.confidence import measure_confidence
    from NeonatalLungSegSlicerLib import mrmlNodes

    result = run["job"].result()
    confidence = result.confidence
    assert confidence is outputs.confidence and 0.9 < confidence.confidence < 1.0
    assert result.labels is None and result.probabilities is None  # released once in the scene
    again = measure_confidence(values, run["job"].request.geometry)  # the probability volume holds the map
    assert [s.index for s in again.slices_to_check(5)] == [e["index"] for e in outputs.reviewSlices]
    info = mrmlNodes.confidenceInfo(outputs.segmentationNode)
    assert info["confidence"] == pytest.approx(confidence.confidence, abs=1e-6) and "slices" not in info
    assert mrmlNodes.confidenceText(outputs.segmentationNode).startswith("Model confidence 9")
    # what the bundled model's boundary conventions left out travels from the worker to the node and the panel
    boundary = mrmlNodes.modelInfo(outputs.segmentationNode)["boundary"]
    assert boundary["min_lung_share"] == STORED["output"]["boundary_min_share"] and boundary["rim_ml"] > 0
    assert f"({boundary['rim_ml']:.1f} mL)" in mrmlNodes.boundaryText(outputs.segmentationNode)
    assert "airway_ml" in boundary  # the air rule ran (what it took on this scan may be nothing)
    other = run["scene"].AddNewNodeByClass("vtkMRMLSegmentationNode")  # a record this scan does not produce
    other.SetAttribute(mrmlNodes.MODEL_ATTRIBUTE, json.dumps({"boundary": dict(boundary, airway_ml=0.5)}))
    assert "0.5 mL of trachea tied to an apex" in mrmlNodes.boundaryText(other)
    run["scene"].RemoveNode(other)
    ras = outputs.reviewSlices[0]["ras"]
    run["logic"].jumpToSlice(ras)  # real vtkMRMLSliceNode.JumpAllSlices on the real scene


def test_cancel_really_stops_and_changes_nothing(run):
    from NeonatalLungSegLib.errors import Cancelled

    scene, logic = run["scene"], run["logic"]
    before = scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    job = logic.startSegmentation(run["parameterNode"])
    job.cancel()
    assert job.wait(60)
    with pytest.raises(Cancelled):
        logic.finishSegmentation(job)
    assert job.progress < 1.0
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == before


def test_rerun_replaces_previous_result_or_keeps_it(run):
    from NeonatalLungSegSlicerLib import mrmlNodes, pipeline

    scene, job = run["scene"], run["job"]
    # The Logic releases a job's arrays once its result is in the scene; the model's mask stays there.
    result = dataclasses.replace(job.result(), probabilities=None,
                                 labels=mrmlNodes.aiLabels(run["outputs"].segmentationNode, run["volume"]))
    model = result.model
    count = scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    kept = pipeline.applyResult(scene, dataclasses.replace(job.request, replacePrevious=False), result, model)
    assert kept.segmentationNode is not run["outputs"].segmentationNode
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == count + 1
    replaced = pipeline.applyResult(scene, dataclasses.replace(job.request, showProbabilities=False), result, model)
    assert replaced.segmentationNode is kept.segmentationNode  # the newest AI result of this volume
    assert replaced.segmentationNode.GetSegmentation().GetNumberOfSegments() == 2
    assert replaced.probabilityNode is None
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == count + 1
    scene.RemoveNode(kept.segmentationNode)


def test_correction_is_exported_voxel_for_voxel_and_never_overwritten(run, tmp_path):
    from NeonatalLungSegLib.dataset.training_folder import read_training_folder
    from NeonatalLungSegSlicerLib.environment import selfTest

    scene, logic, volume = run["scene"], run["logic"], run["volume"]
    segmentation = run["outputs"].segmentationNode
    ai = segment_masks(segmentation, volume)
    expectedRight, expectedLeft, erase, paint = selfTest.correctSegmentation(scene, segmentation, volume)
    corrected = segment_masks(segmentation, volume)
    assert np.array_equal(corrected["Right lung"], expectedRight)
    assert np.array_equal(corrected["Left lung"], expectedLeft)
    removed = int((ai["Right lung"] & ~expectedRight).sum())
    added = int((expectedLeft & ~ai["Left lung"]).sum())
    assert removed > 1000 and added > 10

    volume.SetName("Doe^Jane 1970-01-01")  # what a DICOM import names a node: must not leave the machine
    folder = tmp_path / "training"
    first = logic.exportForTraining(segmentation, volume, folder, "Dr Reviewer")
    import SimpleITK as sitk

    written = sitk.GetArrayFromImage(sitk.ReadImage(str(first.label_path)))
    assert np.array_equal(written == 1, corrected["Right lung"])
    assert np.array_equal(written == 2, corrected["Left lung"])
    assert set(np.unique(written)) == {0, 1, 2}
    image = sitk.ReadImage(str(first.image_path))
    sample = sitk.ReadImage(str(SAMPLE))
    assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(sample))
    assert np.allclose(image.GetOrigin(), sample.GetOrigin(), atol=1e-4)
    assert np.allclose(image.GetDirection(), sample.GetDirection(), atol=1e-6)

    sidecar = first.sidecar
    changes = sidecar["changes_from_ai"]
    assert changes["voxels_removed"]["right_lung"] == removed and changes["voxels_added"]["left_lung"] == added
    assert changes["voxels_added"]["right_lung"] == 0 and changes["voxels_removed"]["left_lung"] == 0
    assert 0.9 < changes["dice"]["right_lung"] < 1.0 and 0.99 < changes["dice"]["left_lung"] < 1.0
    assert sidecar["reviewer"] == "Dr Reviewer" and sidecar["model"]["version"] == STORED["version"]
    assert sidecar["model"]["weights_sha256"] == STORED["weights_sha256"]
    assert sidecar["review_status"] == "reviewed" and 0.9 < sidecar["ai_confidence"]["confidence"] < 1.0
    assert sidecar["subject"].startswith("vol-") and sidecar["source_sha256"].startswith(sidecar["subject"][4:])
    everything = "".join(p.read_text(errors="ignore") for p in folder.rglob("*.json")) + \
        "".join(str(p) for p in folder.rglob("*"))
    assert "Doe" not in everything and "Jane" not in everything and "1970" not in everything

    first_bytes = {p: p.read_bytes() for p in (first.label_path, first.image_path)}
    second = logic.exportForTraining(segmentation, volume, folder, "Dr Reviewer")
    assert (first.record.version, second.record.version) == (1, 2)
    assert second.record.subject == first.record.subject and second.label_path != first.label_path
    assert all(p.read_bytes() == b for p, b in first_bytes.items())
    cases = read_training_folder(folder).cases
    assert [c.case_id for c in cases] == [first.record.case_id, second.record.case_id]
    # An AI mask exported without review is marked so, and `train --reviewed-only` leaves it out.
    unreviewed = logic.exportForTraining(segmentation, volume, tmp_path / "unreviewed", "", "unreviewed")
    assert unreviewed.record.review_status == "unreviewed" \
        and unreviewed.sidecar["model"]["version"] == STORED["version"]

    table = logic.updateVolumeTable(segmentation, volume)
    from NeonatalLungSegSlicerLib import mrmlNodes

    assert mrmlNodes.tableVolumes(table)["Right lung"][1] == int(expectedRight.sum())

    # The exported folder is training data as it stands: the train command consumes it directly.
    from NeonatalLungSegLib.cli.main import main as cli
    from NeonatalLungSegLib.models.model_folder import read_config

    model = tmp_path / "model-from-export"
    assert cli(["train", "--data", str(folder), "--output", str(model), "--encoder", "resnet18",
                "--encoder-depth", "3", "--decoder-channels", "32", "16", "8", "--in-plane-size", "64",
                "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4", "--reviewed-only"]) == 0
    trained = read_config(model)
    assert trained.training["training_cases"] == 2 and trained.training["subjects"]["train"] == 1
    assert trained.training["training_folder_manifest_sha256"] == read_training_folder(folder).manifest_sha256


def test_export_refuses_overlapping_lungs_and_writes_nothing(run, tmp_path):
    from NeonatalLungSegSlicerLib import mrmlNodes, segmentEditing

    scene, logic, volume = run["scene"], run["logic"], run["volume"]
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "overlap test")
    segmentation.CopyContent(run["outputs"].segmentationNode, True)
    editor = segmentEditing.SegmentEditorSession(scene, segmentation, volume)
    editor.editorNode.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteNone)
    left = segment_masks(segmentation, volume)["Left lung"]
    k, j, i = np.argwhere(left)[len(np.argwhere(left)) // 2]
    editor.paint(mrmlNodes.RIGHT_LUNG, (slice(k, k + 2), slice(j, j + 2), slice(i, i + 2)))
    editor.close()
    with pytest.raises(ValueError, match="belong to both"):
        logic.exportForTraining(segmentation, volume, tmp_path / "t", "Dr Reviewer")
    assert not (tmp_path / "t").exists()
    with pytest.raises(ValueError, match="reviewer"):
        logic.exportForTraining(run["outputs"].segmentationNode, volume, tmp_path / "u", "  ")
    with pytest.raises(ValueError, match="training folder"):
        logic.exportForTraining(run["outputs"].segmentationNode, volume, "relative/folder", "Dr Reviewer")
    scene.RemoveNode(segmentation)


def test_module_self_test_passes_on_real_mrml(module, tiny_refine_folder, tmp_path, monkeypatch):
    """The self-test Slicer runs (NeonatalLungSegTest), here on slicer-core MRML with the stand-in base class."""
    # In Slicer the self-test leaves its export for the user to look at; here it goes under tmp_path, not /tmp.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    test = module.NeonatalLungSegTest()
    # Not runTest(): its setUp clears the scene, which the other tests' nodes live in; run the body alone.
    from NeonatalLungSegSlicerLib.environment import selfTest

    logic = module.NeonatalLungSegLogic()
    try:
        outcome = selfTest.run(test, logic, refineModelFolder=tiny_refine_folder)  # AI correct step included
    finally:
        logic.close()
    first, second = outcome["exports"]
    assert outcome["folder"].parent == tmp_path
    assert (first.record.version, second.record.version) == (1, 2)
    assert outcome["click"] is not None and outcome["click"].lung == "right_lung"

