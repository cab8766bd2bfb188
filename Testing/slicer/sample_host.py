"""The module's Widget on the bundled sample in a GIL-holding host: shared by the suite's test
(test_gil_host.py) and the benchmark that compares it with the thread design (benchmarks/gil_host_designs.py)."""

from __future__ import annotations

import contextlib
import time
import types

import gil_host
import slicer_harness

slicer = slicer_harness.slicer
MODEL = slicer_harness.REPO / "Resources" / "Models" / "neonatal-lung-unet-r50"


@contextlib.contextmanager
def open_host(module, on_error):
    """A set-up Widget with the sample loaded, the bundled model on the CPU; ``on_error`` gets error texts."""
    from NeonatalLungSegSlicerLib import resources

    scene = slicer_harness.mrml_environment()["scene"]
    old = scene.GetSingletonNode("NeonatalLungSeg", "vtkMRMLScriptedModuleNode")
    if old is not None:
        scene.RemoveNode(old)
    saved = slicer.util.setSliceViewerLayers, slicer.util.errorDisplay
    slicer.util.setSliceViewerLayers = lambda **kwargs: None
    slicer.util.errorDisplay = lambda text, **kwargs: on_error(text)
    w = module.NeonatalLungSegWidget(types.SimpleNamespace(isEntered=True))
    try:
        w.setup()
        volume = resources.loadSampleVolume(scene, "GIL host sample")
        w.ui.inputVolumeSelector.setCurrentNode(volume)
        node = w._parameterNode
        node.modelFolder = str(MODEL)
        node.device = "CPU"
        yield types.SimpleNamespace(widget=w, ui=w.ui, node=node, scene=scene, volume=volume)
    finally:
        w.cleanup()
        slicer.util.setSliceViewerLayers, slicer.util.errorDisplay = saved


def segment_in_host(host, max_ticks: int) -> tuple[int, float, float]:
    """(ticks, seconds, longest single timer callback in seconds) of one Segment in the GIL-holding host."""
    w = host.widget
    started = time.perf_counter()
    host.ui.segmentButton.click()
    assert w._job is not None and w._timer.isActive()
    longest = [0.0]

    def fire() -> None:
        tick = time.perf_counter()
        w._timer.fire()
        longest[0] = max(longest[0], time.perf_counter() - tick)

    ticks = gil_host.run_ticks(fire, lambda: w._job is None, max_ticks,
                               state=lambda: f"progress {w._job.progress:.2f}, {host.ui.statusLabel.text}")
    return ticks, time.perf_counter() - started, longest[0]
