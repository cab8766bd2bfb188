"""What a domain gate costs a clinician: a whole `segment` command with a gated folder against the same model
ungated, each a fresh process, round robin, medians, with the CPU named.

A benchmark, not a test. The gated folder is built here, in a temporary folder, from the bundled model on both
sides of the gate (the fine-tuned network and the fallback are the same weights, so only the gate's own work
differs: loading the second network and the reference features, and one encoder pass over 16 slices of the
scan). Its references are the sample's features and those of the sample with inverted contrast.

    .venv/bin/python benchmarks/gate_overhead.py [--repeats 5] [--input VOLUME]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "NeonatalLungSeg"), str(REPO / "benchmarks")]
from segment_time import SAMPLE, machine, segment_command, timed  # noqa: E402

MODEL = REPO / "Resources" / "Models" / "neonatal-lung-unet-r50"


def gated_copy(model: Path, volume: Path, out: Path) -> Path:
    import numpy as np

    from NeonatalLungSegLib.geometry import image_to_array
    from NeonatalLungSegLib.inference.gate.routing import GATE_SLICES, scan_features
    from NeonatalLungSegLib.models.gate_files import (FALLBACK_FOLDER, GATE_FILE, GateReferences, gate_record,
                                                      write_references)
    from NeonatalLungSegLib.models.model_folder import CONFIG_NAME, ModelConfig, read_config, sha256_of
    from NeonatalLungSegLib.models.network import build_checked
    from NeonatalLungSegLib.volumes.volume_io import read_volume
    from dataclasses import replace

    config = read_config(model)
    encoder = build_checked(model, config).eval().encoder
    array, geometry = image_to_array(read_volume(volume))
    array = array.astype(np.float32)
    like = scan_features(encoder, array, geometry, config.input, GATE_SLICES)
    unlike = scan_features(encoder, array.max() - array, geometry, config.input, GATE_SLICES)
    references = GateReferences(like[None].astype(np.float32), unlike[None].astype(np.float32))
    shutil.copytree(model, out)
    shutil.copytree(model, out / FALLBACK_FOLDER)
    write_references(out / GATE_FILE, references)
    record = gate_record(sha256_of(out / GATE_FILE), config.weights_sha256, GATE_SLICES, references)
    text = json.dumps(replace(config, gate=record).to_dict(), indent=2)
    ModelConfig.from_dict(json.loads(text))
    (out / CONFIG_NAME).write_text(text + "\n", encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--input", type=Path, default=SAMPLE)
    args = parser.parse_args(argv)
    import os

    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        gated = gated_copy(MODEL, args.input, Path(tmp) / "gated")
        configurations = {"ungated": MODEL, "gated": gated}
        times: dict[str, list[float]] = {name: [] for name in configurations}
        for _ in range(args.repeats):
            for name, folder in configurations.items():
                out = Path(tmp) / f"out-{name}"
                command = segment_command(args.input, out, "cpu")
                command[-1] = command[-1].replace("'--device', 'cpu'",
                                                  f"'--device', 'cpu', '--model', {str(folder)!r}")
                seconds, _ = timed(command, env)
                times[name].append(seconds)
        warm = warm_seconds(configurations, args.input, args.repeats)
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"{started}; {machine()}; input {args.input.name}; {args.repeats} rounds")
    for name, values in times.items():
        print(f"  {name:8s} command median {statistics.median(values):.2f} s (min {min(values):.2f}, max "
              f"{max(values):.2f}); in a warm process (the Slicer worker's case): load {warm[name][0]:.2f} s, "
              f"segment median {statistics.median(warm[name][1]):.2f} s")
    extra = statistics.median(times["gated"]) - statistics.median(times["ungated"])
    warm_extra = statistics.median(warm["gated"][1]) - statistics.median(warm["ungated"][1])
    print(f"  the gate costs {extra:+.2f} s per command, {warm_extra:+.2f} s per segment in a warm process")


def warm_seconds(configurations: dict[str, Path], volume: Path, repeats: int) -> dict[str, tuple[float, list]]:
    """(load seconds, segment seconds per repeat) in this process, the model loaded once, as the worker does."""
    from NeonatalLungSegLib.inference.engine import Segmenter
    from NeonatalLungSegLib.volumes.volume_io import read_volume

    image = read_volume(volume)
    loaded, out = {}, {}
    for name, folder in configurations.items():
        started = time.perf_counter()
        loaded[name] = Segmenter.load(folder, device="cpu")
        out[name] = (time.perf_counter() - started, [])
    for _ in range(repeats):
        for name, segmenter in loaded.items():
            started = time.perf_counter()
            segmenter.segment_image(image)
            out[name][1].append(time.perf_counter() - started)
    return out
    return 0


if __name__ == "__main__":
    sys.exit(main())
