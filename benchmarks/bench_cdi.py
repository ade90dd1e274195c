"""Side-by-side CDI phase-retrieval benchmark: speckle vs cohere-core 4.5.4 (numpy, CPU).

Run from the repository root in the MAIN venv, after ``benchmarks/peers/setup.sh`` (which puts
cohere-core into the separate peer venv)::

    .venv/bin/python benchmarks/bench_cdi.py                    # 256², 20 rounds, 3 repeats
    .venv/bin/python benchmarks/bench_cdi.py --size 128 --rounds 5 --repeats 1   # quick

The data: :func:`speckle.imaging.phasing.simulated_object` (three discs and a bar with a smooth
phase; known, compact support), its far-field intensity with Poisson noise (``--photons``
in total), no mask (cohere has none: it forces every pixel's modulus). Both engines get the
same schedule: ``--rounds`` × (99 HIO + 1 ER) with β = ``--beta`` (0.8, the original server's
default), one trial, the same initial support (a centred box of half the side: cohere's
``initial_support_area``) and a Gaussian shrink-wrap (σ = 1 px, threshold 0.1 of the maximum)
after every 100 iterations (cohere: ``shrink_wrap_trigger = [100, 100]``).

Each repeat runs cohere (``peers/run_cohere.py`` in its own process; timed around its
``iterate()`` only) then speckle (this process, timed around the whole ``phase_retrieval``
call: set-up, iterations, alignment, shrink-wrap, PRTF), in turn, so that both see the same
load. Reported: iterations per second (median and best over repeats) and the normalised error
of each final object against the known truth after alignment (shift, twin, global phase and
scale; :func:`speckle.imaging.align.normalized_error`). cohere's forward transform is numpy's
*inverse* FFT, so its object is the complex conjugate of ours; its error is taken as the
smaller of the errors of its image and of the conjugate (the better case for cohere).

The floors of issue 4: speckle ≥ 1.5× cohere's iterations per second (medians) with a median
final error no worse than cohere's. With a GPU (cupy), speckle's iterations per second at 512²
and 1024² and the fraction of the card's FFT throughput they reach (a bare cupy FFT pair of the
same size timed alone, divided by the time of one iteration, which holds one FFT pair).

The markdown result goes to ``benchmarks/results/cdi_cpu_<date>_<host>.md`` with the CPU model,
cores, load and date.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "peers"))
sys.path.insert(0, str(ROOT))
from _runner_util import machine_info  # noqa: E402

CACHE = HERE / ".cache"
RESULTS = HERE / "results"
PEER_PY = HERE / "peers" / ".venv" / "bin" / "python"
SPEED_FLOOR = 1.5


def simulate(size: int, photons: float, seed: int = 1):
    """The truth, its noisy centred intensity, and the amplitudes file cohere reads."""
    from speckle.imaging.simulate import simulated_object, simulated_pattern

    truth = simulated_object((size, size))
    intensity = simulated_pattern(truth, photons, seed=seed)
    CACHE.mkdir(exist_ok=True)
    amp_file = CACHE / f"cdi_{size}_{photons:.0e}_amplitudes.npy"
    np.save(amp_file, np.sqrt(intensity))
    return truth, intensity, amp_file


def centred_box(size: int, fraction: float = 0.5):
    """cohere's initial support: ``int(fraction * size)`` pixels, padded evenly around."""
    from speckle.imaging.support import support_from_rectangles

    n = int(fraction * size)
    a = (size - n) // 2
    return support_from_rectangles((size, size), [(a, a + n, a, a + n)])


def run_cohere(amp_file: Path, rounds: int, beta: float, average: int, prefix: Path) -> dict:
    cmd = [str(PEER_PY), str(HERE / "peers" / "run_cohere.py"), "--data", str(amp_file),
           "--out", str(prefix), "--sequence", f"{rounds}*(99*HIO+1*ER)", "--beta", str(beta),
           "--support-fraction", "0.5", "--shrink-wrap", "100,100" if rounds > 1 else "",
           "--sigma", "1.0", "--threshold", "0.1", "--average-last", str(average)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"cohere failed:\n{proc.stderr[-2000:]}")
    info = json.loads(Path(str(prefix) + ".json").read_text())
    info["image"] = np.load(str(prefix) + ".npz")["image"]
    return info


def run_speckle(intensity, rounds: int, beta: float, seed: int, average: int = 0,
                device: str = "cpu"):
    from speckle.imaging.phasing import PhasingOptions, phase_retrieval

    opts = PhasingOptions(schedule="99*HIO + 1*ER", rounds=rounds, trials=1, beta=beta,
                          shrinkwrap_sigma=1.0, shrinkwrap_threshold=0.1, seed=seed,
                          average_last=average, device=device)
    return phase_retrieval(intensity, centred_box(intensity.shape[0]), opts)


def truth_error(truth, obj, conjugate_too: bool = False) -> float:
    from speckle.imaging.align import normalized_error

    err = normalized_error(truth, obj, upsample=50)
    if conjugate_too:
        err = min(err, normalized_error(truth, np.conj(obj), upsample=50))
    return err


def cpu_comparison(args) -> dict:
    truth, intensity, amp_file = simulate(args.size, args.photons)
    run_speckle(intensity[: args.size // 4 * 2, : args.size // 4 * 2], 1, args.beta, 0)  # warm
    rows = []
    for rep in range(args.repeats):
        for average in args.average:
            load = os.getloadavg()[0]
            coh = run_cohere(amp_file, args.rounds, args.beta, average,
                             CACHE / f"cohere_{args.size}_{rep}_{average}")
            res = run_speckle(intensity, args.rounds, args.beta, seed=rep, average=average)
            row = {
                "repeat": rep + 1, "average": average, "load_1min": round(load, 2),
                "cohere_it_s": coh["iterations_per_s"], "cohere_iterations": coh["iterations"],
                "cohere_error": truth_error(truth, coh["image"], conjugate_too=True),
                "speckle_it_s": res.iterations / res.elapsed_s,
                "speckle_iterations": res.iterations,
                "speckle_error": truth_error(truth, res.object),
                "speckle_fourier_error": res.final_error,
            }
            rows.append(row)
            print(f"repeat {rep + 1}, average of last {average}: cohere "
                  f"{row['cohere_it_s']:.0f} it/s, error {row['cohere_error']:.4f} | speckle "
                  f"{row['speckle_it_s']:.0f} it/s, error {row['speckle_error']:.4f} "
                  f"(load {load:.2f})", flush=True)

    def med(key, average=None):
        return statistics.median(r[key] for r in rows if average in (None, r["average"]))

    summary = {
        "size": args.size, "photons": args.photons, "rounds": args.rounds, "beta": args.beta,
        "iterations": rows[0]["speckle_iterations"], "rows": rows,
        "cohere_it_s": med("cohere_it_s"), "speckle_it_s": med("speckle_it_s"),
        "cohere_best_it_s": max(r["cohere_it_s"] for r in rows),
        "speckle_best_it_s": max(r["speckle_it_s"] for r in rows),
        "errors": {a: (med("cohere_error", a), med("speckle_error", a)) for a in args.average},
        "cohere_dtype": coh.get("dtype"), "cohere_version": coh.get("version"),
    }
    summary["ratio"] = summary["speckle_it_s"] / summary["cohere_it_s"]
    summary["speed_pass"] = summary["ratio"] >= SPEED_FLOOR
    summary["error_pass"] = {a: s <= c for a, (c, s) in summary["errors"].items()}
    return summary


def gpu_numbers(args) -> list[dict] | None:
    from speckle.backend import device_description, get_xp, gpu_available

    if args.skip_gpu or not gpu_available():
        return None
    cp = get_xp("gpu")
    out = []
    for size in args.gpu_sizes:
        _, intensity, _ = simulate(size, args.photons * (size / args.size) ** 2)
        dev = cp.asarray(intensity)
        run_speckle(dev, 1, args.beta, 0, device="gpu")  # warm-up: plans, kernels
        cp.cuda.Device().synchronize()
        res = run_speckle(dev, args.gpu_rounds, args.beta, 0, device="gpu")  # plain iterations
        x = cp.asarray(np.random.default_rng(0).standard_normal((1, size, size)), cp.complex64)
        for _ in range(5):
            cp.fft.ifft2(cp.fft.fft2(x))
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        n = 200
        start.record()
        for _ in range(n):
            cp.fft.ifft2(cp.fft.fft2(x))
        stop.record()
        stop.synchronize()
        fft_pair_s = cp.cuda.get_elapsed_time(start, stop) / 1e3 / n
        it_s = res.iterations / res.elapsed_s
        out.append({"size": size, "device": device_description(), "iterations": res.iterations,
                    "it_s": it_s, "fft_pair_ms": fft_pair_s * 1e3,
                    "fft_fraction": fft_pair_s * it_s})
        print(f"GPU {size}²: {it_s:.0f} it/s; bare FFT pair {fft_pair_s * 1e3:.3f} ms → "
              f"{fft_pair_s * it_s:.0%} of the FFT throughput", flush=True)
    return out


def _variant(average: int) -> str:
    return f"average of the last {average} iterates" if average else "final iterate"


def markdown(cpu: dict, gpu, info: dict, started: str, wall: float) -> str:
    ok = lambda flag: "PASS" if flag else "FAIL"  # noqa: E731
    lines = [
        f"# CDI phase retrieval: speckle vs cohere-core ({started[:10]})", "",
        f"- Machine: {info.get('cpu_model', '?')}, {info.get('cpus_allowed', '?')} cores "
        f"allowed ({info.get('cpu_count')} online), {info.get('mem_total_gib', '?')} GiB; "
        f"host {info.get('hostname')}",
        f"- Date: {started}; whole run {wall:.0f} s. The machine is shared: the 1-minute load "
        "average of each repeat is listed; timings move with it.",
        f"- Data: simulated {cpu['size']}² complex object (speckle.imaging.phasing."
        f"simulated_object), Poisson noise, {cpu['photons']:.0e} photons, no mask.",
        f"- Schedule (both): {cpu['rounds']} × (99 HIO + 1 ER) = {cpu['iterations']} "
        f"iterations, β = {cpu['beta']}, 1 trial, initial support a centred box of half the "
        "side, shrink-wrap σ = 1 px / threshold 0.1 every 100 iterations.",
        f"- cohere-core {cpu['cohere_version']} (numpy, {cpu['cohere_dtype']}), timed around "
        "`iterate()`; speckle (numpy, complex64, scipy.fft), timed around the whole "
        "`phase_retrieval` call.",
        "- Error: normalised error of the final object against the truth after alignment "
        "(shift, twin, global phase and scale); for cohere the better of its image and its "
        "conjugate (its forward FFT is numpy's inverse one).", "",
        "| repeat | result of a run | load | cohere it/s | speckle it/s | ratio | cohere error "
        "| speckle error |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in cpu["rows"]:
        lines.append(f"| {r['repeat']} | {_variant(r['average'])} | {r['load_1min']:.2f} | "
                     f"{r['cohere_it_s']:.0f} | {r['speckle_it_s']:.0f} | "
                     f"{r['speckle_it_s'] / r['cohere_it_s']:.2f} | {r['cohere_error']:.4f} | "
                     f"{r['speckle_error']:.4f} |")
    lines += [
        f"| **median** | all | | **{cpu['cohere_it_s']:.0f}** | **{cpu['speckle_it_s']:.0f}** "
        f"| **{cpu['ratio']:.2f}** | | |", "",
        f"Best run: cohere {cpu['cohere_best_it_s']:.0f} it/s, speckle "
        f"{cpu['speckle_best_it_s']:.0f} it/s.", "",
        "## Floors (issue 4)", "",
        f"- speckle ≥ {SPEED_FLOOR}× cohere's iterations per second (medians of all runs): "
        f"{cpu['ratio']:.2f}× — {ok(cpu['speed_pass'])}",
    ]
    for a, (c, sp) in cpu["errors"].items():
        lines.append(f"- final error no worse than cohere's, {_variant(a)} (medians): speckle "
                     f"{sp:.4f} vs cohere {c:.4f} — {ok(cpu['error_pass'][a])}")
    lines += [
        "",
        "Both engines run the same algorithm (ER/HIO with the same support and shrink-wrap), so "
        "with the final iterate as result their errors are the noise floor of this data "
        "(phasing with the true support gives about the same) and differ by chance. Averaging "
        "the last iterates lowers the floor: speckle averages the complex estimates "
        "(`average_last`), cohere only the amplitudes (its `average_trigger`).", "",
        "## GPU", "",
    ]
    if not gpu:
        lines.append("No usable GPU on this machine (cupy missing or no CUDA device): not run.")
    else:
        lines += ["| size | device | it/s | bare FFT pair (ms) | fraction of FFT throughput |",
                  "|---:|---|---:|---:|---:|"]
        for g in gpu:
            lines.append(f"| {g['size']}² | {g['device']} | {g['it_s']:.0f} | "
                         f"{g['fft_pair_ms']:.3f} | {g['fft_fraction']:.0%} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="pattern side (default 256)")
    ap.add_argument("--photons", type=float, default=1e9, help="total counts (default 1e9)")
    ap.add_argument("--rounds", type=int, default=20, help="rounds of 99 HIO + 1 ER (20)")
    ap.add_argument("--beta", type=float, default=0.8, help="HIO β (default 0.8)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats (default 3)")
    ap.add_argument("--average", type=int, nargs="+", default=[0, 50],
                    help="results compared: final iterate (0) and/or the average of the last "
                         "N iterates (default: 0 50)")
    ap.add_argument("--gpu-sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--gpu-rounds", type=int, default=10)
    ap.add_argument("--skip-gpu", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    if not PEER_PY.exists():
        raise SystemExit(f"no peer venv at {PEER_PY}: run benchmarks/peers/setup.sh first")
    started = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    t0 = time.perf_counter()
    cpu = cpu_comparison(args)
    gpu = gpu_numbers(args)
    info = machine_info()
    text = markdown(cpu, gpu, info, started, time.perf_counter() - t0)
    print()
    print(text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        host = info.get("hostname", "host").split(".")[0] or "host"
        path = RESULTS / f"cdi_cpu_{started[:10].replace('-', '')}_{host}.md"
        path.write_text(text)
        print(f"written: {path}")
    return 0 if cpu["speed_pass"] and all(cpu["error_pass"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
