"""The *Measurements* section's Logic: the lung descriptors (NeonatalLungSegLib.measurements, docs/descriptors.md)
of a segmentation as it is now (after any correction), shown as MRML nodes, and the per-case report.

No widgets. The descriptors are the engine's own (``describe_arrays`` on the segments read by name, on the
input volume's grid), so the table, the report, the CLI's ``describe`` and the export sidecar agree. Nodes are
made on first use and referenced from the segmentation node, so a re-measure updates them in place:
a descriptor table (descriptor, unit, right lung, left lung, both lungs), a histogram table, one plot series
per lung and one plot chart.
"""

import math
import re
from pathlib import Path

import vtk

from NeonatalLungSegSlicerLib import mrmlNodes, pipeline

TABLE_ROLE = "NeonatalLungSegDescriptorTable"
HISTOGRAM_ROLE = "NeonatalLungSegHistogramTable"
CHART_ROLE = "NeonatalLungSegHistogramChart"
SERIES_ROLE = "NeonatalLungSegHistogramSeries"  # + "right" / "left"
LUNG_COLUMNS = (("right", "right lung"), ("left", "left lung"), ("both", "both lungs"))
SIGNAL_COLUMN = "signal / reference"
SERIES_COLOURS = {"right": (0.85, 0.40, 0.30), "left": (0.30, 0.55, 0.85)}


def lungArrays(segmentationNode, volumeNode):
    """(scan, labels 1 = right / 2 = left, geometry) of the segmentation now, on the volume's grid."""
    if segmentationNode is None or volumeNode is None:
        raise ValueError("Segment first: measurements need the lung segmentation and its input volume.")
    scheme, _, labels, _ = pipeline.currentLabels(segmentationNode, volumeNode)
    if scheme != "right_left":
        raise ValueError("Measurements need the right and left lungs as separate segments (Segment with "
                         "'split left/right' on).")
    return mrmlNodes.volumeArray(volumeNode, copy=False), labels, mrmlNodes.volumeGeometry(volumeNode)


def _sources(segmentationNode, volumeNode):
    return {"source": f"volume '{volumeNode.GetName()}'",
            "labels_source": f"segmentation '{segmentationNode.GetName()}'"}


def describe(segmentationNode, volumeNode, weightKg=None):
    """Every descriptor of the lungs now (the engine's dict); InputError / ValueError, one line, when not."""
    from NeonatalLungSegLib.measurements.descriptors import describe_arrays

    scan, labels, geometry = lungArrays(segmentationNode, volumeNode)
    return describe_arrays(scan, labels, geometry, weight_kg=weightKg, **_sources(segmentationNode, volumeNode))


def tableRows(descriptors):
    """(label, unit, right, left, both) per descriptor, in the engine's table order; rows with no value at all
    (per-kg volume and weight when no weight was given) left out. Case-wide values sit in the both-lungs column."""
    from NeonatalLungSegLib.measurements.descriptors import CASE, INTENSITY, LUNGS, SHAPE

    lungs = descriptors["lungs"]
    rows = [(d.label, d.unit, *(lungs[lung][d.key] for lung in LUNGS)) for d in SHAPE]
    rows += [(d.label, d.unit, *(lungs[lung]["intensity"][d.key] for lung in LUNGS)) for d in INTENSITY]
    case = {"right_left_volume_ratio": descriptors["right_left_volume_ratio"], "weight_kg": descriptors["weight_kg"],
            "reference_median": descriptors["normalisation"]["reference_median"]}
    rows += [(d.label, d.unit, None, None, case[d.key]) for d in CASE]
    return [row for row in rows if any(value is not None for value in row[2:])]


def _referenced(scene, segmentationNode, role, className, name):
    node = segmentationNode.GetNodeReference(role)
    if node is None or node.GetScene() is not scene:
        node = scene.AddNewNodeByClass(className, scene.GenerateUniqueName(f"{segmentationNode.GetName()} {name}"))
        segmentationNode.SetNodeReferenceID(role, node.GetID())
    return node


def updateDescriptorTable(scene, segmentationNode, descriptors):
    rows = tableRows(descriptors)
    table = _referenced(scene, segmentationNode, TABLE_ROLE, "vtkMRMLTableNode", "descriptors")
    columns = [("descriptor", vtk.vtkStringArray, [r[0] for r in rows]),
               ("unit", vtk.vtkStringArray, [r[1] for r in rows])]
    columns += [(title, vtk.vtkDoubleArray, [r[2 + i] for r in rows]) for i, (_, title) in enumerate(LUNG_COLUMNS)]
    return mrmlNodes.fillTable(table, columns)


def updateHistogram(scene, segmentationNode, descriptors):
    """The normalised signal histogram per lung (fraction of the lung's voxels per bin) as a plot chart."""
    edges = descriptors["histogram_edges"]
    centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    table = _referenced(scene, segmentationNode, HISTOGRAM_ROLE, "vtkMRMLTableNode", "signal histogram")
    lungs = descriptors["lungs"]
    mrmlNodes.fillTable(table, [(SIGNAL_COLUMN, vtk.vtkDoubleArray, centres),
                  *((title, vtk.vtkDoubleArray, lungs[lung]["intensity"]["histogram"])
                    for lung, title in LUNG_COLUMNS[:2])])
    chart = _referenced(scene, segmentationNode, CHART_ROLE, "vtkMRMLPlotChartNode", "signal histogram")
    chart.SetTitle("Lung signal histogram")
    chart.SetXAxisTitle("signal / soft-tissue reference")
    chart.SetYAxisTitle("fraction of the lung's voxels")
    for lung, title in LUNG_COLUMNS[:2]:
        series = _referenced(scene, segmentationNode, SERIES_ROLE + lung, "vtkMRMLPlotSeriesNode", title)
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetXColumnName(SIGNAL_COLUMN)
        series.SetYColumnName(title)
        series.SetPlotType(series.PlotTypeScatter)
        series.SetMarkerStyle(series.MarkerStyleNone)
        series.SetColor(*SERIES_COLOURS[lung])
        if not chart.HasPlotSeriesNodeID(series.GetID()):
            chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return chart


def update(scene, segmentationNode, volumeNode, weightKg=None):
    """Measure and show: (descriptors, table node, chart node)."""
    descriptors = describe(segmentationNode, volumeNode, weightKg)
    return (descriptors, updateDescriptorTable(scene, segmentationNode, descriptors),
            updateHistogram(scene, segmentationNode, descriptors))


def caseName(volumeNode):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", volumeNode.GetName()).strip("._-") or "case"


def saveReport(folder, segmentationNode, volumeNode, weightKg=None):
    """NAME_report.html, NAME_descriptors.json and .csv of the segmentation now, into ``folder``: all or nothing,
    never over an existing file (refused before any work). Returns the paths written."""
    from NeonatalLungSegLib.measurements.outputs import output_paths, prepare_case, write_case
    from NeonatalLungSegLib.volumes.volume_io import AtomicOutputs

    folder = Path(str(folder or "").strip()).expanduser()
    if not str(folder) or str(folder) == "." or not folder.is_absolute():
        raise ValueError("Choose a report folder (a full path).")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: is a file, not a folder.")
    name = caseName(volumeNode) if volumeNode is not None else "case"
    outputs = AtomicOutputs(overwrite=False)
    for path in output_paths(folder, name).values():
        outputs.check(path)
    scan, labels, geometry = lungArrays(segmentationNode, volumeNode)
    sources = _sources(segmentationNode, volumeNode)
    case = prepare_case(name, scan, labels, geometry, weight_kg=weightKg, model=mrmlNodes.modelInfo(segmentationNode),
                        scan_source=sources["source"], labels_source=sources["labels_source"])
    with outputs:
        return write_case(outputs, folder, case)


def exportDescriptors(scan, labels, geometry):
    """The export sidecar's descriptors of the labels being exported: numbers only (the sidecar's privacy checks),
    the report's CSV row without the case name and the weight (not the infant's data to keep); None when the
    labels cannot be described (one lung, whole-lung scheme, no intensity range)."""
    from NeonatalLungSegLib.errors import InputError
    from NeonatalLungSegLib.measurements.descriptors import csv_row, describe_arrays

    try:
        row = csv_row("", describe_arrays(scan, labels, geometry))
    except InputError:
        return None
    return {key: (None if value is None or not math.isfinite(value) else value)
            for key, value in row.items() if key not in ("case", "weight_kg", "volume_ml_per_kg")
            and not key.endswith("_volume_ml_per_kg")}
