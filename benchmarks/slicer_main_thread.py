"""How long Slicer's main thread is blocked by Segment and by one AI correct click on a large volume, and how
much memory the Slicer side still holds once a Segment is done.

A benchmark, not a test: the figures depend on the machine and its load. It runs the module's real Widget and
the AI correct Segment Editor effect (real MRML from slicer-core, the Qt and effect stand-ins of
Testing/slicer) in a host that holds the GIL between 100 ms timer ticks as Slicer does (Testing/slicer/
gil_host.py), on a synthetic 512 x 512 x 300 int16 volume, with the worker process running the fakes of
Testing/lib/worker_fakes.py (a threshold segmenter, a cube-adding refiner): the Slicer side does exactly what
it does with a real model, only the worker's own compute is cheaper.

Measured, each as the longest single main-thread call (a button click, a slice-view click, one timer tick):
- Segment, send (the Segment click: the voxels written to the worker's input file) and receive (every timer
  tick until the result is in the scene);
- one AI click, the first (the volume is sent to prepare the session) and a second one (session ready);
- memory: the Slicer process's resident set (RSS) and Python's traced allocations (tracemalloc: NumPy arrays
  included) after the Segment job against before it, beside what the scene itself gained (the segmentation's
  labelmap and the stored AI mask, both cropped to the lungs).

    .venv/bin/python benchmarks/slicer_main_thread.py [--out benchmarks/results/slicer-main-thread.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAKES = REPO / "Testing" / "lib"
sys.path[:0] = [str(REPO / "Testing" / "slicer"), str(REPO / "Testing"), str(REPO / "NeonatalLungSeg"), str(FAKES)]
SHAPE = (300, 512, 512)  # (k, j, i)


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="utf-8") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def megabytes(value: float) -> float:
    return round(value / 2**20, 1)


class Blocks:
    """Times each main-thread call; keeps the longest per phase."""

    def __init__(self) -> None:
        self.longest: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def run(self, phase: str, call):
        start = time.perf_counter()
        try:
            return call()
        finally:
            took = time.perf_counter() - start
            self.longest[phase] = max(self.longest.get(phase, 0.0), took)
            self.calls[phase] = self.calls.get(phase, 0) + 1


def synthetic_volume(slicer, scene):
    import numpy as np

    array = np.full(SHAPE, 20, np.int16)
    array[60:240, 150:350, 110:240] = 200  # right lung (low i), left lung: the fake thresholds at 150
    array[60:240, 150:350, 272:400] = 200
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "large synthetic chest")
    slicer.util.updateVolumeFromArray(volume, array)
    volume.SetSpacing(0.7, 0.7, 1.0)
    return volume


def image_bytes(node) -> int:
    data = node.GetImageData() if node is not None else None
    return 0 if data is None else data.GetNumberOfPoints() * data.GetScalarSize() * data.GetNumberOfScalarComponents()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--max-ticks", type=int, default=3000)
    args = parser.parse_args(argv)
    import gil_host
    import slicer_harness
    from machine import machine_info, machine_line

    slicer = slicer_harness.slicer
    module = slicer_harness.import_module()
    from NeonatalLungSegSlicerLib import labelmaps, mrmlNodes
    from NeonatalLungSegSlicerLib.correcting import aiCorrectEffect
    from NeonatalLungSegSlicerLib.processRunner import ProcessRunner

    scene = slicer_harness.mrml_environment()["scene"]
    slicer.util.setSliceViewerLayers = lambda **kwargs: None
    slicer.util.errorDisplay = lambda text, **kwargs: (_ for _ in ()).throw(RuntimeError(text))
    blocks = Blocks()
    results = {"machine": machine_line(machine_info()), "volume": f"{SHAPE[2]} x {SHAPE[1]} x {SHAPE[0]} int16",
               "tick_ms": gil_host.TICK_MICROSECONDS // 1000, "worker": "fakes (Testing/lib/worker_fakes.py)"}
    # The fakes keep their bookkeeping here, not in the model folder the panel names.
    os.environ["NEONATAL_LUNG_SEG_FAKE_CONTROL"] = tempfile.mkdtemp(prefix="slicer-main-thread-")
    w = module.NeonatalLungSegWidget(types.SimpleNamespace(isEntered=True))
    w.setup()
    try:
        w.logic.runner.close()
        w.logic.runner = ProcessRunner(loader="worker_fakes:load", refineLoader="worker_fakes:load_refiner",
                                       extraPaths=[FAKES])
        volume = synthetic_volume(slicer, scene)
        w.ui.inputVolumeSelector.setCurrentNode(volume)
        w._parameterNode.showProbabilities = False  # the default
        gc.collect()
        tracemalloc.start()
        rssBefore, tracedBefore = rss_bytes(), tracemalloc.get_traced_memory()[0]

        started = time.perf_counter()
        blocks.run("Segment: send (the Segment click)", w.ui.segmentButton.click)
        ticks = gil_host.run_ticks(lambda: blocks.run("Segment: receive (one timer tick)", w._timer.fire),
                                   lambda: w._job is None, args.max_ticks, state=lambda: w.ui.statusLabel.text)
        segmentSeconds = time.perf_counter() - started
        segmentation = w._parameterNode.outputSegmentation
        assert segmentation is not None, w.ui.statusLabel.text
        gc.collect()
        rssAfter, tracedAfter = rss_bytes(), tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        layer = segmentation.GetSegmentation().GetSegment(
            segmentation.GetSegmentation().GetSegmentIdBySegmentName(mrmlNodes.RIGHT_LUNG)).GetRepresentation(
            labelmaps.binaryName())
        sceneBytes = (layer.GetNumberOfPoints() * layer.GetScalarSize()
                      + image_bytes(segmentation.GetNodeReference(mrmlNodes.AI_LABELS_ROLE)))
        results["segment"] = {"ticks": ticks, "seconds": round(segmentSeconds, 2),
                              "status": w.ui.statusLabel.text}
        results["memory_after_segment_MB"] = {
            "rss_delta": megabytes(rssAfter - rssBefore), "python_traced_delta": megabytes(tracedAfter - tracedBefore),
            "scene_gain_labelmaps": megabytes(sceneBytes), "volume_itself": megabytes(image_bytes(volume))}

        w.ui.aiCorrectButton.click()
        effect = w.ui.segmentEditorWidget.effectByName(aiCorrectEffect.EFFECT_NAME).self()
        red = slicer.app.layoutManager().sliceWidget("Red")
        for name, kji in (("first AI click", (150, 250, 242)), ("second AI click", (151, 250, 243))):
            sliceNode = red.mrmlSliceNode()
            matrix = slicer.util.arrayFromVTKMatrix(labelmaps.ijkToRas(volume))
            sliceNode.JumpSliceByCentering(*(matrix @ [kji[2], kji[1], kji[0], 1.0])[:3])
            x, y = (d // 2 for d in sliceNode.GetDimensions()[:2])
            interactor = red.sliceView().interactor()
            started = time.perf_counter()
            blocks.run(f"{name}: the click", lambda: interactor.click(x, y))
            assert effect.busy, effect.statusLabel.text
            clickTicks = gil_host.run_ticks(lambda: blocks.run(f"{name}: one timer tick", effect.timer.fire),
                                            lambda: not effect.busy, args.max_ticks,
                                            state=lambda: effect.statusLabel.text)
            results[name] = {"ticks": clickTicks, "seconds": round(time.perf_counter() - started, 2),
                             "status": effect.statusLabel.text}
    finally:
        w.cleanup()
        shutil.rmtree(os.environ.pop("NEONATAL_LUNG_SEG_FAKE_CONTROL"), ignore_errors=True)
    results["longest_main_thread_block_ms"] = {phase: round(1000 * seconds, 1)
                                               for phase, seconds in blocks.longest.items()}
    results["calls"] = blocks.calls
    print(json.dumps(results, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
