"""MRML nodes in and out of the engine's terms: arrays, geometry, segmentations, tables.

Everything here runs on the GUI thread and touches only MRML, so it is exercised in CI against the real
MRML of the slicer-core wheel. Coordinates go through ``NeonatalLungSegLib.geometry`` (the one owner of
array order and LPS/RAS), never through ad-hoc flips here.
"""

import json

import numpy as np
import vtk

import slicer

RIGHT_LUNG, LEFT_LUNG, LUNGS = "Right lung", "Left lung", "Lungs"
# Engine label name -> (segment name, SNOMED CT laterality modifier or None, RGB 0..1).
# Right lung keeps the colour Slicer's General Anatomy terminology recommends for lung (197, 165, 145).
# The terminology recommends that same colour for the left lung, which makes a swapped right/left split
# invisible at a glance, so the left lung gets a distinct blue-grey tint instead.
SEGMENTS = {
    "right_lung": (RIGHT_LUNG, ("SCT", "24028007", "Right"), (197 / 255, 165 / 255, 145 / 255)),
    "left_lung": (LEFT_LUNG, ("SCT", "7771000", "Left"), (145 / 255, 170 / 255, 197 / 255)),
    "lung": (LUNGS, ("SCT", "51440002", "Right and left"), (197 / 255, 165 / 255, 145 / 255)),
}
EXPORT_ORDER = {"right_left": (RIGHT_LUNG, LEFT_LUNG), "lung": (LUNGS,)}

AI_ATTRIBUTE = "NeonatalLungSeg.AIResult"
MODEL_ATTRIBUTE = "NeonatalLungSeg.Model"
REVIEW_ATTRIBUTE = "NeonatalLungSeg.ReviewSlices"
CONFIDENCE_ATTRIBUTE = "NeonatalLungSeg.Confidence"
SOURCE_ROLE = "NeonatalLungSegSourceVolume"
AI_LABELS_ROLE = "NeonatalLungSegAILabels"
TABLE_ROLE = "NeonatalLungSegVolumeTable"
PROBABILITY_ROLE = "NeonatalLungSegProbability"
AI_LABELS_OFFSET_ATTRIBUTE = "NeonatalLungSeg.AILabelsOffset"  # "k,j,i" of the stored box's first voxel


def terminologyEntry(modifier):
    """Slicer's serialized terminology entry for lung (SNOMED CT 39607008) with a laterality modifier."""
    scheme, code, meaning = modifier
    return ("Segmentation category and type - 3D Slicer General Anatomy list"
            "~SCT^123037004^Anatomical Structure~SCT^39607008^Lung"
            f"~{scheme}^{code}^{meaning}~Anatomic codes - DICOM master list~^^~^^")


def volumeGeometry(volumeNode):
    """The engine's Geometry of a volume node (its IJK-to-RAS matrix and voxel counts)."""
    from NeonatalLungSegLib.geometry import Geometry

    imageData = volumeNode.GetImageData()
    if imageData is None:
        raise ValueError(f"volume '{volumeNode.GetName()}' holds no image data")
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return Geometry.from_ijk_to_ras_matrix(slicer.util.arrayFromVTKMatrix(matrix), imageData.GetDimensions())


def setVolumeGeometry(volumeNode, geometry):
    volumeNode.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(geometry.ijk_to_ras_matrix()))


def volumeArray(volumeNode, copy=True):
    """The voxels, (k, j, i), in their own type. ``copy=False`` gives MRML's own memory (no copy: for writing
    straight to the worker's input file on the main thread, then dropped)."""
    if volumeNode.GetImageData() is None or volumeNode.GetImageData().GetNumberOfScalarComponents() != 1:
        raise ValueError(f"volume '{volumeNode.GetName()}' is not a single-component scalar volume")
    array = slicer.util.arrayFromVolume(volumeNode)
    return np.array(array, copy=True) if copy else array


def findAIResult(scene, volumeNode):
    """The newest segmentation node this module made from ``volumeNode``, or None."""
    found = None
    for node in slicer.util.getNodesByClass("vtkMRMLSegmentationNode", scene):
        if node.GetAttribute(AI_ATTRIBUTE) == "true" and node.GetNodeReferenceID(SOURCE_ROLE) == volumeNode.GetID():
            found = node
    return found


def prepareSegmentationNode(scene, volumeNode, replacePrevious):
    """The node to hold a new AI result: the volume's previous one emptied, or a new one."""
    node = findAIResult(scene, volumeNode) if replacePrevious else None
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                       scene.GenerateUniqueName(f"{volumeNode.GetName()} lungs"))
        node.CreateDefaultDisplayNodes()
        node.SetAttribute(AI_ATTRIBUTE, "true")
        node.SetNodeReferenceID(SOURCE_ROLE, volumeNode.GetID())
    node.GetSegmentation().RemoveAllSegments()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    return node


def fillSegments(segmentationNode, volumeNode, labels, labelNames, box=False):
    """One segment per engine label, named, coded (SNOMED CT) and coloured, sharing one labelmap cropped to the
    lungs (``labelmaps.writeLabels``: no whole-volume import per segment); returns name -> segment ID."""
    from NeonatalLungSegSlicerLib import labelmaps

    entries = []
    for labelName, value in sorted(labelNames.items(), key=lambda item: item[1]):
        name, modifier, color = SEGMENTS[labelName]
        entries.append((name, value, color, terminologyEntry(modifier)))
    ids = labelmaps.writeLabels(segmentationNode, volumeNode, labels, entries, box)
    displayNode = segmentationNode.GetDisplayNode()
    if displayNode is not None:
        displayNode.SetVisibility(True)
        displayNode.SetVisibility2DFill(True)
    # No closed surfaces here: once created they are regenerated on every paint stroke of a correction.
    # "Show in 3D" (Logic.showIn3D) builds them once, on request.
    return ids


def storeAILabels(scene, segmentationNode, volumeNode, labels, box=False):
    """Keep the model's own mask beside the segmentation, so an export can say what the reviewer changed.

    A hidden labelmap node referenced by the segmentation survives scene save/load with it. It holds the
    mask's bounding box only (its origin moved there, the box's first voxel in an attribute): the scene keeps
    megabytes, not a second whole volume.
    """
    from NeonatalLungSegSlicerLib import labelmaps

    node = segmentationNode.GetNodeReference(AI_LABELS_ROLE)
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode",
                                       scene.GenerateUniqueName(f"{segmentationNode.GetName()} AI labels"))
        node.SetHideFromEditors(True)
        segmentationNode.SetNodeReferenceID(AI_LABELS_ROLE, node.GetID())
    return labelmaps.storeCropped(scene, node, volumeNode, labels, AI_LABELS_OFFSET_ATTRIBUTE, box)


def aiLabels(segmentationNode, volumeNode):
    """The stored model mask on ``volumeNode``'s grid, or None when absent or on another grid."""
    from NeonatalLungSegSlicerLib import labelmaps

    node = segmentationNode.GetNodeReference(AI_LABELS_ROLE)
    if node is None or node.GetImageData() is None:
        return None
    return labelmaps.readCropped(node, volumeNode, AI_LABELS_OFFSET_ATTRIBUTE)


def segmentArrays(segmentationNode, volumeNode, names):
    """name -> bool mask on the volume's grid, looked up by segment name (never by position); read from each
    segment's own labelmap extent (``labelmaps``), resampled by Slicer only when off the volume's grid."""
    from NeonatalLungSegSlicerLib import labelmaps

    segmentation = segmentationNode.GetSegmentation()
    arrays = {}
    for name in names:
        segmentId = segmentation.GetSegmentIdBySegmentName(name)
        if not segmentId:
            raise ValueError(f"segmentation '{segmentationNode.GetName()}' has no segment named '{name}'")
        labels = np.zeros(labelmaps.volumeShape(volumeNode), dtype=np.uint8)
        labelmaps.segmentMaskInto(segmentationNode, segmentId, volumeNode, labels, 1)
        arrays[name] = labels.view(bool)
    return arrays


def labelScheme(segmentationNode):
    """'right_left' when both lungs are segments, 'lung' for a single unsplit 'Lungs' segment."""
    segmentation = segmentationNode.GetSegmentation()
    if segmentation.GetSegmentIdBySegmentName(RIGHT_LUNG) and segmentation.GetSegmentIdBySegmentName(LEFT_LUNG):
        return "right_left"
    if segmentation.GetSegmentIdBySegmentName(LUNGS):
        return "lung"
    raise ValueError(f"segmentation '{segmentationNode.GetName()}' needs segments '{RIGHT_LUNG}' and "
                     f"'{LEFT_LUNG}' (or one '{LUNGS}' segment)")


def exportLabelArray(scene, segmentationNode, volumeNode, names):
    """Labels 1, 2, ... in ``names`` order, through Slicer's own segmentation-to-labelmap export."""
    segmentation = segmentationNode.GetSegmentation()
    ids = vtk.vtkStringArray()
    for name in names:
        ids.InsertNextValue(segmentation.GetSegmentIdBySegmentName(name))
    labelNode = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    try:
        if not slicer.modules.segmentations.logic().ExportSegmentsToLabelmapNode(segmentationNode, ids, labelNode,
                                                                                  volumeNode):
            raise RuntimeError(f"Slicer could not export '{segmentationNode.GetName()}' to a labelmap")
        return np.array(slicer.util.arrayFromVolume(labelNode), dtype=np.uint8, copy=True)
    finally:
        scene.RemoveNode(labelNode)


def updateVolumeTable(scene, segmentationNode, volumes):
    """Right / left / total lung volume (mL, voxels) in the segmentation's table node (made on first use)."""
    table = segmentationNode.GetNodeReference(TABLE_ROLE)
    if table is None:
        table = scene.AddNewNodeByClass("vtkMRMLTableNode",
                                        scene.GenerateUniqueName(f"{segmentationNode.GetName()} volumes"))
        segmentationNode.SetNodeReferenceID(TABLE_ROLE, table.GetID())
    rows = [(SEGMENTS[key][0], volumes[key]) for key in ("right_lung", "left_lung", "lung") if key in volumes]
    rows.append(("Total", volumes["total"]))
    names, millilitres, voxels = vtk.vtkStringArray(), vtk.vtkDoubleArray(), vtk.vtkIntArray()
    names.SetName("Segment")
    millilitres.SetName("Volume [mL]")
    voxels.SetName("Voxels")
    for name, entry in rows:
        names.InsertNextValue(name)
        millilitres.InsertNextValue(round(float(entry["volume_ml"]), 3))
        voxels.InsertNextValue(int(entry["voxels"]))
    wasModifying = table.StartModify()
    table.RemoveAllColumns()
    for column in (names, millilitres, voxels):
        table.AddColumn(column)
    table.SetUseColumnTitleAsColumnHeader(True)
    table.EndModify(wasModifying)
    return table


def tableVolumes(table):
    """Segment name -> (mL, voxels), read back from the table (for display checks and the self-test)."""
    result = {}
    for row in range(table.GetNumberOfRows()):
        result[table.GetCellText(row, 0)] = (float(table.GetCellText(row, 1)), int(table.GetCellText(row, 2)))
    return result


def updateProbabilityVolume(scene, segmentationNode, volumeNode, probabilities):
    """The lung probability (0..1) as a scalar volume on the input grid, referenced by the segmentation."""
    return runSteps(updateProbabilityVolumeSteps(scene, segmentationNode, volumeNode, probabilities))


def runSteps(steps):
    """Run a step generator (the GUI-thread work split over timer ticks) to its end, at once; its return
    value. For scripts, tests and the self-test, which have no timer to wait for."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def updateProbabilityVolumeSteps(scene, segmentationNode, volumeNode, probabilities, slicesPerStep=None):
    """Generator doing ``updateProbabilityVolume`` in steps of ``slicesPerStep`` slices (all at once for None),
    so a large float32 map (possibly a memory-mapped file) is copied into MRML over several timer ticks; it
    returns the node."""
    from vtk.util.numpy_support import vtk_to_numpy

    node = segmentationNode.GetNodeReference(PROBABILITY_ROLE)
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode",
                                       scene.GenerateUniqueName(f"{volumeNode.GetName()} lung probability"))
        segmentationNode.SetNodeReferenceID(PROBABILITY_ROLE, node.GetID())
    k, j, i = probabilities.shape
    imageData = vtk.vtkImageData()
    imageData.SetDimensions(i, j, k)
    imageData.AllocateScalars(vtk.VTK_FLOAT, 1)
    view = vtk_to_numpy(imageData.GetPointData().GetScalars()).reshape(k, j, i)
    step = slicesPerStep or k
    for start in range(0, k, step):
        view[start:start + step] = probabilities[start:start + step]
        if start + step < k:
            yield
    node.SetAndObserveImageData(imageData)
    node.CopyOrientation(volumeNode)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()  # else the volume shows grey, with no colour map
    displayNode = node.GetDisplayNode()
    if displayNode is not None:
        displayNode.SetAutoWindowLevel(False)
        displayNode.SetWindowLevelMinMax(0.0, 1.0)
        displayNode.SetAndObserveColorNodeID("vtkMRMLColorTableNodeRainbow")
    return node


def storeReviewSlices(segmentationNode, slices):
    segmentationNode.SetAttribute(REVIEW_ATTRIBUTE, json.dumps(
        [{"index": s.index, "score": s.score, "text": s.describe(), "ras": list(s.center_ras)} for s in slices]))


def reviewSlices(segmentationNode):
    """The least-confident slices stored with a result: dicts with index, score, text and ras."""
    text = segmentationNode.GetAttribute(REVIEW_ATTRIBUTE) if segmentationNode else None
    return json.loads(text) if text else []


def storeConfidence(segmentationNode, confidence):
    """The case-level confidence of the AI result (no per-slice list), or nothing when not measured."""
    if confidence is None:
        segmentationNode.RemoveAttribute(CONFIDENCE_ATTRIBUTE)
        return
    summary = confidence.to_dict(check_count=0)
    for key in ("slices", "slices_to_check"):
        summary.pop(key)
    segmentationNode.SetAttribute(CONFIDENCE_ATTRIBUTE, json.dumps(summary))


def confidenceInfo(segmentationNode):
    """The stored confidence summary (dict with confidence, mean_entropy_bits, flip_dice, ...) or None."""
    text = segmentationNode.GetAttribute(CONFIDENCE_ATTRIBUTE) if segmentationNode else None
    return json.loads(text) if text else None


def confidenceText(segmentationNode):
    """One line for the panel, or '' when the segmentation carries no confidence."""
    info = confidenceInfo(segmentationNode)
    if not info:
        return ""
    text = (f"Model confidence {100 * info['confidence']:.1f} % (estimated Dice); "
            f"{100 * info['uncertain_fraction']:.1f} % of lung voxels undecided")
    if info.get("flip_dice") is not None:
        text += f"; left-right flip agreement {info['flip_dice']:.3f}"
    if info.get("mask_voxels") == 0:
        text += ". No lung found: check the whole volume"
    return text + "."


def boundaryText(segmentationNode):
    """One line on what the model's boundary conventions left out of the volumes, or ''."""
    info = (modelInfo(segmentationNode) or {}).get("boundary") if segmentationNode else None
    if not info:
        return ""
    parts = []
    if "rim_ml" in info:
        parts.append(f"the partial-volume rim at the wall ({info['rim_ml']:.1f} mL) is left out, as experts "
                     "draw lungs")
    if info.get("tissue_ml"):
        parts.append(f"{info['tissue_ml']:.1f} mL whose signal is tissue's was taken out")
    if info.get("airway_ml"):
        parts.append(f"{info['airway_ml']:.1f} mL of trachea tied to an apex was taken out")
    return ("Volumes: " + "; ".join(parts) + ".") if parts else ""


def modelInfo(segmentationNode):
    text = segmentationNode.GetAttribute(MODEL_ATTRIBUTE)
    return json.loads(text) if text else None


def fillTable(table, columns):
    """Replace ``table``'s columns by ``columns`` ((title, vtk array class, values); None is NaN) in one
    modification, so a view showing the table redraws once."""
    arrays = []
    for title, arrayClass, values in columns:
        array = arrayClass()
        array.SetName(title)
        for value in values:
            array.InsertNextValue(float("nan") if value is None else value)
        arrays.append(array)
    wasModifying = table.StartModify()
    table.RemoveAllColumns()
    for array in arrays:
        table.AddColumn(array)
    table.SetUseColumnTitleAsColumnHeader(True)
    table.EndModify(wasModifying)
    return table
