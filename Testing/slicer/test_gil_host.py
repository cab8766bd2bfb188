"""Segment of the bundled sample in a host that holds the GIL between 100 ms timer ticks (as Slicer does).

The worker-process design finishes, and the main thread is never blocked long: each timer callback (poll,
and taking the result into the scene) stays under MAX_BLOCK_S. Timing-free apart from that bound, which
benchmarks/gil_host_designs.py measures (with the thread-based design it replaced, which needs far more
ticks: every torch call on its thread waits for the main thread to run Python). Runs the real module
Widget, the bundled model and the bundled sample.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import sample_host
import slicer_harness

# A generous cap on idle ticks (300 s of idling), only so a hung worker cannot hang the suite.
TICK_CAP = 3000
# Longest main-thread block of one timer callback. benchmarks/gil_host_designs.py measured 0.22-0.28 s on the
# sample (2-core Xeon, busy): the bound leaves room for a loaded machine.
MAX_BLOCK_S = 2.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def module():
    return slicer_harness.import_module()


@pytest.fixture
def host(module):
    with sample_host.open_host(module, on_error=pytest.fail) as opened:
        yield opened


def test_process_worker_segments_the_sample_without_blocking_the_main_thread(host):
    first, _, longest_first = sample_host.segment_in_host(host, TICK_CAP)
    assert host.ui.statusLabel.text.startswith("Done: right"), host.ui.statusLabel.text
    # the panel says where and how the real worker ran the model (int8 with OpenVINO on a CPU with VNNI)
    assert re.search(r"\((cpu|cuda[:0-9]*|mps), (fp32|fp16|bf16|int8) \((requested|chosen[^)]*\)?)\)"
                     r"(, openvino [0-9.]+)?\)$",
                     host.ui.statusLabel.text), host.ui.statusLabel.text
    segmentation = host.node.outputSegmentation
    from NeonatalLungSegSlicerLib import mrmlNodes

    masks = mrmlNodes.segmentArrays(segmentation, host.volume, (mrmlNodes.RIGHT_LUNG, mrmlNodes.LEFT_LUNG))
    assert all(np.count_nonzero(m) > 10000 for m in masks.values())
    pid = host.widget.logic.runner.workerPid
    second, _, longest_second = sample_host.segment_in_host(host, TICK_CAP)  # model already loaded
    assert host.widget.logic.runner.workerPid == pid and host.widget.logic.runner.startedWorkers == 1
    print(f"\nGIL-holding host, worker process: first Segment {first} ticks, second {second} ticks; longest "
          f"main-thread block {max(longest_first, longest_second):.2f} s")
    assert max(longest_first, longest_second) <= MAX_BLOCK_S
