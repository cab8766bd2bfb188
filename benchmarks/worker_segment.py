"""Segment through the module's worker process, as a clinician's click in Slicer waits for it, with the CPU named.

A benchmark, not a test. The Slicer module runs Segment in a worker process (``worker_client.WorkerClient``,
docs/worker-protocol.md); its first Segment pays the process start, the imports and the model load, later
ones only the inference. Each round starts a fresh worker, times its first Segment of the volume (submit to
result) and then a second one in the same worker; figures are medians over the rounds. Here the worker
runs with this venv's Python, not PythonSlicer, so Slicer's own start-up is not in the figures.

    .venv/bin/python benchmarks/worker_segment.py [--repeats 3] [--input VOLUME] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "NeonatalLungSeg")]
from NeonatalLungSegLib.inference.acceleration import cpu_line  # noqa: E402

SAMPLE = REPO / "Resources" / "Sample" / "sample-neonatal-chest.nii.gz"
MODEL = REPO / "Resources" / "Models" / "neonatal-lung-unet-r50"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--input", type=Path, default=SAMPLE)
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    import numpy as np
    import SimpleITK as sitk

    from NeonatalLungSegLib.geometry import image_to_array
    from NeonatalLungSegLib.worker.client import WorkerClient

    array, geometry = image_to_array(sitk.ReadImage(str(args.input)))
    array = array.astype(np.float32)
    first, second, model = [], [], {}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="nls-worker-bench-") as tmp:
            client = WorkerClient(session_dir=Path(tmp) / "session")
            try:
                for times in (first, second):
                    started = time.perf_counter()
                    job = client.submit(array, geometry, args.model.resolve(), device=args.device)
                    if not job.wait(600):
                        raise SystemExit(f"the worker did not finish: {job.status}")
                    model = job.result().model
                    times.append(time.perf_counter() - started)
            finally:
                client.close()
    inference = ", ".join(str(model.get(k)) for k in ("device", "precision", "backend"))
    print(f"machine: {cpu_line()}")
    print(f"input: {args.input.name} {array.shape[::-1]}; model {model.get('name')} {model.get('version')} "
          f"({inference})")
    print(f"first Segment (fresh worker: start, imports, model load, inference): median "
          f"{statistics.median(first):.2f} s over {len(first)} ({', '.join(f'{t:.2f}' for t in first)})")
    print(f"second Segment (same worker, model loaded): median {statistics.median(second):.2f} s "
          f"({', '.join(f'{t:.2f}' for t in second)})")
    if args.out:
        args.out.write_text(json.dumps({"machine": cpu_line(), "input": args.input.name, "model": model,
                                        "first_s": first, "second_s": second}, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
