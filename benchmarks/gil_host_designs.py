"""Worker process against a Python thread, in a host that holds the GIL between 100 ms ticks as Slicer does.

A benchmark, not a test: the figures depend on the machine and its load. It runs the module's real Widget
(real MRML from slicer-core, the Qt stand-ins of Testing/slicer), the bundled model and the bundled sample:

- the worker-process design (the shipped one): two Segments in one worker (the second reuses the model);
- the thread-based design it replaced (Testing/slicer/thread_runner.py), bounded at --max-ticks.

For each: ticks (100 ms idles with the GIL held), wall seconds and the longest single timer callback, i.e.
the longest time the main thread was blocked. The suite asserts only that the worker finishes and that no
callback blocks longer than the bound this measures (Testing/slicer/test_gil_host.py).

    .venv/bin/python benchmarks/gil_host_designs.py [--max-ticks 1500] [--out benchmarks/results/gil-host.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "Testing" / "slicer"), str(REPO / "Testing"), str(REPO / "NeonatalLungSeg")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-ticks", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    import gil_host
    import sample_host
    import slicer_harness
    from machine import machine_info, machine_line

    module = slicer_harness.import_module()
    results = {"machine": machine_line(machine_info()), "tick_ms": gil_host.TICK_MICROSECONDS // 1000, "designs": {}}

    def fail(text: str) -> None:
        raise RuntimeError(text)

    with sample_host.open_host(module, on_error=fail) as host:
        for run in ("first", "second"):
            ticks, seconds, longest = sample_host.segment_in_host(host, args.max_ticks)
            results["designs"][f"worker process, {run} Segment"] = {
                "ticks": ticks, "seconds": round(seconds, 2), "longest_block_s": round(longest, 3)}
    with sample_host.open_host(module, on_error=fail) as host:
        from thread_runner import ThreadRunner

        host.widget.logic.runner.close()
        host.widget.logic.runner = ThreadRunner()
        try:
            ticks, seconds, longest = sample_host.segment_in_host(host, args.max_ticks)
            entry = {"ticks": ticks, "seconds": round(seconds, 2), "longest_block_s": round(longest, 3)}
        except gil_host.TickBoundExceeded as exceeded:
            entry = {"ticks": f"> {exceeded.ticks} (not finished)", "progress_state": exceeded.state}
        results["designs"]["thread in the GUI process"] = entry
    print(json.dumps(results, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
