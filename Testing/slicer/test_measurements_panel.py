"""The *Measurements* section on real MRML: the descriptor table node, the histogram plot, the body weight and
Save report, after Segment (fake worker, as in test_widget_wiring.py) and after a Segment Editor correction."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import slicer_harness
from test_widget_wiring import finish, module, widget  # noqa: F401  (fixtures)

slicer = slicer_harness.slicer


def chestLike(fixture):
    """The wiring volume made MR-like for the descriptors: air outside the body, soft tissue around the lungs
    (the signal reference) and the two lung blocks the fake segmenter finds (> 150) with some texture."""
    rng = np.random.default_rng(28)
    array = np.zeros((10, 16, 20), np.int16)
    array[:, 1:15, 1:19] = rng.integers(120, 140, size=(10, 14, 18))
    array[2:8, 4:12, 2:8] = rng.integers(151, 200, size=(6, 8, 6))
    array[2:8, 4:12, 12:18] = rng.integers(151, 180, size=(6, 8, 6))
    slicer.util.updateVolumeFromArray(fixture.volume, array)


def segmented(fixture):
    chestLike(fixture)
    fixture.ui.segmentButton.click()
    finish(fixture)
    panel = fixture.widget._measurements
    assert panel.timer.isActive()  # the result re-measures once its edits pause
    panel.timer.fire()
    return panel


def expected(fixture, weight=None):
    from NeonatalLungSegLib.measurements.descriptors import describe_arrays
    from NeonatalLungSegSlicerLib import mrmlNodes, pipeline

    node = fixture.node
    _, _, labels, _ = pipeline.currentLabels(node.outputSegmentation, node.inputVolume)
    return describe_arrays(mrmlNodes.volumeArray(node.inputVolume), labels,
                           mrmlNodes.volumeGeometry(node.inputVolume), weight_kg=weight), labels


def tableValues(table):
    rows = {}
    for row in range(table.GetNumberOfRows()):
        rows[table.GetCellText(row, 0)] = (table.GetCellText(row, 1),
                                           *(table.GetTable().GetColumn(c).GetValue(row) for c in (2, 3, 4)))
    return rows


def checkTable(table, descriptors):
    from NeonatalLungSegSlicerLib.measuring.measurements import tableRows

    assert [table.GetColumnName(c) for c in range(5)] == ["descriptor", "unit", "right lung", "left lung",
                                                          "both lungs"]
    rows = tableValues(table)
    wanted = tableRows(descriptors)
    assert list(rows) == [r[0] for r in wanted]
    for label, unit, *values in wanted:
        assert rows[label][0] == unit
        for got, want in zip(rows[label][1:], values):
            assert (math.isnan(got) if want is None else got == pytest.approx(want, rel=1e-12, abs=1e-12)), label
    return rows


def test_segment_fills_the_descriptor_table_and_the_histogram_plot(widget):  # noqa: F811
    panel = segmented(widget)
    table = widget.ui.measurementsTableView.tableNode
    assert table is not None and table is panel.table, widget.ui.measurementsStatusLabel.text
    descriptors, _ = expected(widget)
    rows = checkTable(table, descriptors)
    assert rows["Volume"][3] == pytest.approx(descriptors["lungs"]["both"]["volume_ml"])
    assert "Volume per body weight" not in rows  # no weight given
    assert widget.ui.measurementsStatusLabel.text.startswith("Measured: right ")
    # Histogram: one series per lung on one chart, the values the engine computed.
    chart = panel.chart
    assert chart.IsA("vtkMRMLPlotChartNode") and chart.GetNumberOfPlotSeriesNodes() == 2
    for index, lung in enumerate(("right", "left")):
        series = chart.GetNthPlotSeriesNode(index)
        assert series.IsA("vtkMRMLPlotSeriesNode") and series.GetYColumnName() == f"{lung} lung"
        values = series.GetTableNode().GetTable().GetColumnByName(f"{lung} lung")
        got = [values.GetValue(i) for i in range(values.GetNumberOfTuples())]
        assert got == pytest.approx(descriptors["lungs"][lung]["intensity"]["histogram"])
        x = series.GetTableNode().GetTable().GetColumnByName(series.GetXColumnName())
        assert x.GetNumberOfTuples() == len(descriptors["histogram_edges"]) - 1


def test_a_segment_editor_correction_updates_the_table(widget):  # noqa: F811
    from NeonatalLungSegSlicerLib import mrmlNodes, segmentEditing

    if not segmentEditing.segmentEditorLogicAvailable():
        pytest.skip("no vtkSlicerSegmentEditorLogic in this slicer-core")
    panel = segmented(widget)
    before = tableValues(panel.table)["Volume"]
    editor = segmentEditing.SegmentEditorSession(widget.scene, widget.node.outputSegmentation, widget.volume)
    try:
        editor.erase(mrmlNodes.RIGHT_LUNG, (slice(2, 4), slice(None), slice(None)))  # two slices of the right lung
    finally:
        editor.close()
    assert panel.timer.isActive()  # the edit scheduled a re-measure (debounced, not per stroke)
    panel.timer.fire()
    descriptors, labels = expected(widget)
    after = checkTable(panel.table, descriptors)["Volume"]
    assert not np.any(labels[2:4] == 1)
    assert after[1] < before[1] and after[2] == pytest.approx(before[2])  # right smaller, left unchanged
    assert panel.table is widget.ui.measurementsTableView.tableNode  # the same node, updated in place


def test_weight_adds_per_kg_and_bad_weights_are_one_line_and_change_nothing(widget):  # noqa: F811
    panel = segmented(widget)
    widget.ui.weightLineEdit.text = "1.5"
    panel.timer.fire()
    descriptors, _ = expected(widget, weight=1.5)
    rows = checkTable(panel.table, descriptors)
    assert rows["Volume per body weight"][3] == pytest.approx(descriptors["lungs"]["both"]["volume_ml"] / 1.5)
    snapshot = repr(tableValues(panel.table))  # repr: NaN cells compare equal
    for bad in ("0", "900", "-1", "abc"):
        widget.ui.weightLineEdit.text = bad
        panel.timer.fire()
        status = widget.ui.measurementsStatusLabel.text
        assert "\n" not in status and ("weight" in status.lower()), status
        assert repr(tableValues(panel.table)) == snapshot


def test_save_report_writes_html_json_csv_and_refuses_an_existing_target(widget, tmp_path):  # noqa: F811
    panel = segmented(widget)
    out = tmp_path / "reports"
    widget.ui.reportFolderPathLineEdit.currentPath = str(out)
    widget.ui.weightLineEdit.text = "900"
    widget.ui.saveReportButton.click()
    assert widget.ui.measurementsStatusLabel.text.startswith("Report not saved: Body weight")
    assert not out.exists()
    widget.ui.weightLineEdit.text = ""
    assert widget.ui.saveReportButton.enabled
    paths = panel.onSaveReport()
    assert paths is not None, widget.ui.measurementsStatusLabel.text
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths.values())
    descriptors, _ = expected(widget)
    written = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert written["lungs"]["both"]["volume_ml"] == pytest.approx(descriptors["lungs"]["both"]["volume_ml"])
    assert "research use, not clinically validated" in paths["report"].read_text(encoding="utf-8")
    assert paths["csv"].read_text(encoding="utf-8").count("\n") == 2
    stamps = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    widget.ui.saveReportButton.click()
    status = widget.ui.measurementsStatusLabel.text
    assert status.startswith("Report not saved:") and "already exists" in status and "\n" not in status
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == stamps


def test_export_sidecar_holds_the_corrected_masks_descriptors(widget, tmp_path):  # noqa: F811
    from NeonatalLungSegSlicerLib import mrmlNodes, segmentEditing

    segmented(widget)
    if segmentEditing.segmentEditorLogicAvailable():
        editor = segmentEditing.SegmentEditorSession(widget.scene, widget.node.outputSegmentation, widget.volume)
        editor.erase(mrmlNodes.LEFT_LUNG, (slice(2, 3), slice(None), slice(None)))
        editor.close()
    widget.ui.reviewerLineEdit.text = "Dr Wiring"
    widget.ui.trainingFolderPathLineEdit.currentPath = str(tmp_path / "folder")
    widget.ui.exportButton.click()
    assert widget.ui.exportStatusLabel.text.startswith("Exported "), widget.ui.exportStatusLabel.text
    sidecars = [p for p in (tmp_path / "folder").rglob("*.json") if p.name != "manifest.json"]
    sidecar = next(json.loads(p.read_text(encoding="utf-8")) for p in sidecars if "descriptors" in json.loads(p.read_text(encoding="utf-8")))
    descriptors, _ = expected(widget)
    assert sidecar["descriptors"]["both_volume_ml"] == pytest.approx(descriptors["lungs"]["both"]["volume_ml"])
    assert sidecar["descriptors"]["left_volume_ml"] == pytest.approx(sidecar["volumes"]["left_lung"]["volume_ml"])
    assert all(v is None or isinstance(v, (int, float)) for v in sidecar["descriptors"].values())
