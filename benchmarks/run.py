"""Speed benchmark: the naive baseline and the engine's default path, side by side, in one run.

    .venv/bin/python benchmarks/run.py            (or: make bench)

What it measures, with medians over repeats, each configuration in its own child process (so peak RSS is
that configuration's own, and the model is loaded once per configuration); the repeats run round robin
(every configuration once per round), so on a shared machine all configurations meet the same load:
- end-to-end seconds per volume in a warm process (read, preprocess, infer, post-process, write), split into
  stages, for synthetic 256x256x96 and 512x512x300 volumes (and 256x256x128 where CUDA exists);
- forward ms per slice and slices/s, FLOPs per slice and forward throughput as a fraction of the device's
  peak; peak RSS; peak GPU memory;
- training throughput (slices/s) in fp32 and mixed precision (bf16 autocast);
- Dice of every configuration's labels against the naive fp32 baseline's.

Configurations: ``naive`` (one slice at a time, fp32, contiguous layout, libgomp's default spinning threads,
the values checked twice: the seeds' way), ``previous`` (the engine before this work), single changes
(``+channels_last``, ``+fp16``), and ``default`` (what ``neonatal-lung-seg segment`` does now).
The machine, its load average and the CPU share other processes took during each measurement are printed
beside every figure. Do not set OMP_NUM_THREADS for a benchmark run. Results: benchmarks/results/*.json, *.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "NeonatalLungSeg")]
MODEL = REPO / "Resources" / "Models" / "neonatal-lung-unet-r50"
VOLUMES = {  # name: (shape k j i, spacing mm, seed); the generator is the project's own
    "256x256x96": ((96, 256, 256), (1.5, 0.55, 0.55), 5150),
    "256x256x128": ((128, 256, 256), (1.2, 0.55, 0.55), 5151),
    "512x512x300": ((300, 512, 512), (0.5, 0.3, 0.3), 99),
}
from NeonatalLungSegLib.inference.acceleration import cpu_precision, cpu_prefers_int8  # noqa: E402
from machine import cpu_busy_jiffies, machine_info, machine_line, peak_flops  # noqa: E402
from workers import model_worker, worker  # noqa: E402


# ----------------------------------------------------------------------------------------- configurations

def configurations(device: str, ablation: bool) -> list[dict]:
    """Each: engine settings plus process settings (threads, OpenMP wait policy, value checks)."""
    naive = {"name": "naive", "batch_size": 1, "precision": "fp32", "channels_last": False, "passive": False,
             "threads": "torch default", "check_twice": True,
             "what": "one slice at a time, fp32, contiguous, spinning OpenMP threads, values checked twice"}
    default = {"name": "default", "batch_size": None, "precision": "auto", "channels_last": None,
               "passive": True, "threads": "physical cores", "check_twice": False,
               "what": "the CLI's defaults now"}
    configs = [naive]
    if ablation:
        previous = {**naive, "name": "previous", "batch_size": 32 if device == "cuda" else 8,
                    "precision": "bf16" if device == "cuda" else "fp32",
                    "what": "the engine before this work: batches, no channels_last, values checked twice"}
        configs += [{**naive, "name": "naive+passive", "passive": True, "threads": "physical cores",
                     "what": "naive with the default path's thread settings (passive OpenMP wait)"},
                    previous,
                    {**previous, "name": "+channels_last", "channels_last": True, "check_twice": False,
                     "what": "previous + channels_last + values checked once"},
                    {**previous, "name": "+fp16", "channels_last": True, "check_twice": False,
                     "precision": "auto", "what": "+channels_last + auto precision (per CPU: fp16 with AMX-FP16, "
                                                  "bf16 with AVX512-BF16 / AMX-BF16, else fp32; fp16 on GPUs)"}]
    if device == "cpu" and cpu_prefers_int8()[0]:  # auto runs the int8 network here: time torch's choice too
        configs.append({**default, "name": "default torch", "precision": cpu_precision()[0],
                        "what": "the default path without the int8 network (torch, the precision auto picks "
                                "for torch on this CPU)"})
    return configs + [default]


# ----------------------------------------------------------------------------------------------- parent

def run_child(kind: str, spec: dict, env_extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(env_extra or {})
    before_load = os.getloadavg()[0]
    busy0, total0 = cpu_busy_jiffies()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, f"--{kind}", json.dumps(spec)], capture_output=True,
                          text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - t0
    busy1, total1 = cpu_busy_jiffies()
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    child = result.pop("_cpu_s")
    ticks = os.sysconf("SC_CLK_TCK")
    machine_busy = (busy1 - busy0) / ticks
    capacity = (total1 - total0) / ticks
    result["load"] = {"load1_before": round(before_load, 2), "load1_after": round(os.getloadavg()[0], 2),
                      "others_cpu_share": round(max(0.0, machine_busy - child) / max(capacity, 1e-9), 3),
                      "wall_s": round(wall, 1)}
    return result


class Child:
    """A configuration's worker process, kept alive between commands (model loaded once)."""

    def __init__(self, spec: dict, env_extra: dict | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        env.update(env_extra or {})
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise RuntimeError(f"worker exited with status {self.proc.returncode} (its stderr is above)")
        return json.loads(line)

    def ask(self, command: str) -> dict:
        """Send one command; the answer carries the load during it."""
        load1 = os.getloadavg()[0]
        busy0, total0 = cpu_busy_jiffies()
        t0 = time.perf_counter()
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self._read()
        wall = time.perf_counter() - t0
        busy1, total1 = cpu_busy_jiffies()
        ticks = os.sysconf("SC_CLK_TCK")
        others = max(0.0, (busy1 - busy0) / ticks - answer.pop("_cpu_s", 0.0)) / max((total1 - total0) / ticks, 1e-9)
        answer["load"] = {"load1_before": round(load1, 2), "others_cpu_share": round(others, 3),
                          "wall_s": round(wall, 2)}
        return answer

    def finish(self) -> dict:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        answer = self._read()
        self.proc.wait()
        return answer


def generate(folder: Path, name: str) -> Path:
    shape, spacing, seed = VOLUMES[name]
    target = folder / name
    subprocess.run([sys.executable, "-m", "NeonatalLungSegLib.cli.main", "synthesize", "-o", str(target), "--seed",
                    str(seed), "--shape", *map(str, shape), "--spacing", *map(str, spacing)], check=True,
                   capture_output=True, cwd=REPO,
                   env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "NeonatalLungSeg"),
                                                                     str(REPO / "Training")])})
    return next((target / "images").glob("*.nii.gz"))


def dice_against(reference: Path, candidate: Path) -> dict:
    import SimpleITK as sitk

    from NeonatalLungSegLib.inference.measure import dice

    a = sitk.GetArrayFromImage(sitk.ReadImage(str(reference)))  # a copy: a view dies with its image
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(candidate)))
    return {"right": dice(a == 1, b == 1), "left": dice(a == 2, b == 2), "lungs": dice(a > 0, b > 0)}


def summarise(report: dict) -> dict:
    runs = report["runs"]
    return {key: statistics.median(r[key] for r in runs) for key in runs[0] if key != "load"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="end-to-end repeats per volume (median)")
    parser.add_argument("--large-repeats", type=int, default=2,
                        help="repeats for 512x512x300 (its naive baseline runs once: minutes per run)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    parser.add_argument("--no-ablation", action="store_true", help="only naive and default")
    parser.add_argument("--no-large", action="store_true", help="skip the 512x512x300 volume")
    parser.add_argument("--no-training", action="store_true", help="skip training throughput")
    parser.add_argument("--volumes", nargs="+", choices=sorted(VOLUMES), default=None,
                        help="volumes to run (default 256x256x96, 512x512x300 and on CUDA 256x256x128)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--name", default=None,
                        help="results file stem (default bench-DEVICE); name the CPU family, e.g. "
                             "bench-cpu-amd-epyc-avx512bf16, so another machine's results are not replaced")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    if args.model_worker:
        import resource

        result = model_worker(json.loads(args.model_worker))
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result["_cpu_s"] = usage.ru_utime + usage.ru_stime
        print(json.dumps(result))
        return 0
    if os.environ.get("OMP_NUM_THREADS"):
        print(f"warning: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} is set; figures will not be the "
              "defaults'", file=sys.stderr)
    import torch

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = "cpu" if device == "auto" else device
    info = machine_info(MODEL)
    info["device"] = device
    line = machine_line(info)
    print(f"machine: {line}\ndevice: {device}; "
          f"precision auto picks {info['cpu_precision'] if device == 'cpu' else 'per GPU'}; "
          f"load average at start {os.getloadavg()}", flush=True)
    names = args.volumes or (["256x256x96"] + (["256x256x128"] if device == "cuda" else [])
                             + ([] if args.no_large else ["512x512x300"]))
    results = {"machine": info, "machine_line": line, "device": device,
               "command": "benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "started": time.strftime("%Y-%m-%d %H:%M:%S"), "volumes": {}}
    with tempfile.TemporaryDirectory(prefix="nls-bench-") as tmp:
        tmp_path = Path(tmp)
        model = run_child("model-worker", {"device": device, "training": not args.no_training})
        results["model"] = model
        print(f"model: {model['flops_per_slice'] / 1e9:.2f} GFLOP per 128x128 slice forward, "
              f"{model['parameters'] / 1e6:.1f} M parameters", flush=True)
        for mode, rate in model.get("training", {}).items():
            print(f"  training {mode}: {rate:.1f} slices/s (batch {model['training_batch']}; "
                  f"{line}; load {model['load']})", flush=True)
        for name in names:
            volume = generate(tmp_path, name)
            configs = configurations(device, ablation=not args.no_ablation and name != "512x512x300")
            repeats = args.large_repeats if name == "512x512x300" else args.repeats
            children = {}
            for config in configs:
                out = tmp_path / f"out-{name}-{config['name']}"
                children[config["name"]] = Child({"config": config, "device": device, "volume": str(volume),
                                                  "out": str(out)})
            per_volume = {c["name"]: {**children[c["name"]].info, "config": c, "runs": []} for c in configs}
            for round_ in range(repeats):  # round robin: each configuration once per round
                for config in configs:
                    if name == "512x512x300" and config["name"] == "naive" and round_ > 0:
                        continue  # minutes per run under load; once is enough to know it
                    per_volume[config["name"]]["runs"].append(children[config["name"]].ask("run"))
            for config in configs:
                report = per_volume[config["name"]]
                child = children[config["name"]]
                if name == "256x256x96":
                    report["forward"] = child.ask("forward")
                    if config["name"] == "default":
                        report["profile"] = child.ask("profile")
                report.update(child.finish())
                report["median"] = summarise(report)
                report["load"] = {"load1_before": statistics.median(r["load"]["load1_before"] for r in report["runs"]),
                                  "others_cpu_share": statistics.median(r["load"]["others_cpu_share"]
                                                                        for r in report["runs"])}
                if "forward" in report:
                    flops = model["flops_per_slice"] * report["forward"]["slices_per_s"]
                    peak, source = peak_flops(info, device, report["precision"])
                    report["forward"]["flop_per_s"] = flops
                    report["forward"]["fraction_of_peak"] = None if peak is None else flops / peak
                    report["forward"]["peak_source"] = source
                out = tmp_path / f"out-{name}-{config['name']}"
                report["dice_vs_naive"] = dice_against(tmp_path / f"out-{name}-naive" / "labels.nii.gz",
                                                       out / "labels.nii.gz")
                m = report["median"]
                print(f"{name} {config['name']:>15}: {m['total_s']:6.2f} s end to end (median of "
                      f"{len(report['runs'])}; infer {m['preprocess_infer_s']:.2f}, post {m['postprocess_s']:.2f}, "
                      f"read {m['read_s']:.2f}, write {m['write_s']:.2f}), peak RSS "
                      f"{report['peak_rss_bytes'] / 2**30:.2f} GiB"
                      + (f", peak GPU {report['peak_gpu_bytes'] / 2**30:.2f} GiB" if "peak_gpu_bytes" in report
                         else "")
                      + (f", forward {report['forward']['ms_per_slice']:.1f} ms/slice" if "forward" in report
                         else "")
                      + f", Dice vs naive {report['dice_vs_naive']['lungs']:.5f}; {report['precision']} "
                        f"({report.get('precision_reason', '')}), backend {report.get('backend', 'torch')}; {line}; "
                        f"load {report['load']}",
                      flush=True)
                results["volumes"][name] = per_volume
                args.out.mkdir(parents=True, exist_ok=True)
                (args.out / f"{args.name or 'bench-' + device}.partial.json").write_text(
                    json.dumps(results, indent=1) + "\n")
            results["volumes"][name] = per_volume
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.name or f"bench-{device}"
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(results))
    (args.out / f"{stem}.partial.json").unlink(missing_ok=True)
    print(f"wrote {args.out / (stem + '.json')} and {args.out / (stem + '.md')}")
    return 0


def markdown(results: dict) -> str:
    line, device = results["machine_line"], results["device"]
    model = results["model"]
    out = [f"# Benchmark ({device})", "", f"Machine: {line}.",
           f"CPU instruction-set features: {results['machine'].get('cpu_features', '?')}; precision `auto` picks "
           f"there: {results['machine'].get('cpu_precision', '?')}.",
           f"Command: `.venv/bin/python {results['command'].strip()}`"
           f" ({results['started']}).", "",
           "End to end = read + preprocess + infer + post-process + write, in a warm process (model loaded), "
           "median over repeats. Load: 1-min load average before the run, and the share of the CPUs other "
           "processes used while it ran (**under load** when above 10 %).", "",
           "| volume | configuration | end to end s | speed-up vs naive | infer s | post s | read+write s | "
           "forward ms/slice | slices/s | forward FLOP/s (% of peak) | peak RSS GiB | peak GPU GiB | "
           "Dice vs naive (R / L) | batch, precision, backend, layout, threads | load |",
           "|" + "---|" * 15]
    for name, per_volume in results["volumes"].items():
        naive_total = per_volume["naive"]["median"]["total_s"]
        for config_name, r in per_volume.items():
            m, f, load, d = r["median"], r.get("forward"), r["load"], r["dice_vs_naive"]
            if f:
                share = f.get("fraction_of_peak")
                rate = f["flop_per_s"]
                flops = f"{rate / 1e12:.2f} T" if rate >= 1e12 else f"{rate / 1e9:.0f} G"
                flops += f" ({100 * share:.1f} %)" if share is not None else ""
                forward = f"{f['ms_per_slice']:.1f} | {f['slices_per_s']:.1f} | {flops}"
            else:
                forward = "- | - | -"
            gpu = f"{r['peak_gpu_bytes'] / 2**30:.2f}" if "peak_gpu_bytes" in r else "n/a"
            loaded = "**under load** " if load["others_cpu_share"] > 0.10 else ""
            out.append(
                f"| {name} | {config_name} | {m['total_s']:.2f} | {naive_total / m['total_s']:.2f}x | "
                f"{m['preprocess_infer_s']:.2f} | {m['postprocess_s']:.2f} | {m['read_s'] + m['write_s']:.2f} | "
                f"{forward} | {r['peak_rss_bytes'] / 2**30:.2f} | {gpu} | {d['right']:.5f} / {d['left']:.5f} | "
                f"{r['batch_size']}, {r['precision']}, {r.get('backend', 'torch')}, "
                f"{'NHWC' if r['channels_last'] else 'NCHW'}, "
                f"{r['threads']} thr (OMP wait {r['omp_wait_policy']}) | {loaded}load1 {load['load1_before']}, "
                f"others {100 * load['others_cpu_share']:.0f} % |")
    sources = sorted({r["forward"]["peak_source"] for per_volume in results["volumes"].values()
                      for r in per_volume.values() if r.get("forward")})
    out += ["", "Peaks used for the % of peak: " + "; ".join(sources) + "."]
    out += ["", "Configurations:", ""]
    first = next(iter(results["volumes"].values()))
    out += [f"- `{n}`: {r['config']['what']}" for n, r in first.items()]
    out += ["", f"Network: {model['flops_per_slice'] / 1e9:.2f} GFLOP per slice forward (FlopCounterMode, "
                f"1 x 128 x 128), {model['parameters'] / 1e6:.1f} M parameters.", ""]
    if model.get("training"):
        load = model["load"]
        out += [f"Training throughput (batch {model['training_batch']}, forward + backward + Adam; "
                f"load1 {load['load1_before']}, others {100 * load['others_cpu_share']:.0f} %): "
                + ", ".join(f"{mode} {rate:.1f} slices/s" for mode, rate in model["training"].items()), ""]
    for name, per_volume in results["volumes"].items():
        for config_name in ("naive", "default"):
            prof = per_volume.get(config_name, {}).get("profile")
            if prof:
                out += [f"## Profile: {config_name}, {name}", "", "```", prof["cprofile"], "```", "", "```",
                        prof["torch_ops"], "```", ""]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
