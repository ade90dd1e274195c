"""The monitor's parts: templates, writer detection, the index, the results layout; and the
command line: ``speckle watch`` killed mid-queue and restarted, ``speckle reprocess`` on two Dask
workers against one process, interrupted and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from monitor_helpers import TEMPLATE, frames, wait_for_index, write_stack
from speckle.errors import InvalidInputError
from speckle.io.writing import writer_still_active
from speckle.monitor.completeness import Settling, probe
from speckle.monitor.index import append_index, read_index
from speckle.monitor.layout import ResultsLayout
from speckle.monitor.templates import Template, TemplateStore, load_template, save_template
from speckle.xpcs.recipe import PartitionSpec, XpcsRecipe

SPECKLE = [sys.executable, "-m", "speckle"]


# ---------------------------------------------------------------------- templates
def test_a_template_round_trips_through_yaml_with_units(tmp_path):
    t = Template.from_dict({
        "kind": "xpcs", "folder": str(tmp_path),
        "xpcs": {"partition": {"kind": "q_rings", "n_rings": 6, "q_min": "0.006/A",
                               "q_width": "0.03/nm"},
                 "metadata": {"frame_time": "1.3ms", "energy": "7.99keV", "distance": "2230mm",
                              "pixel_size": "108um", "beam_center": [143, 123]},
                 "options": {"fit_model": "stretched", "twotime": False, "exclude_frames": "3,10-12"}}})
    recipe = t.xpcs
    assert recipe.partition.q_min == pytest.approx(0.006e10) and recipe.partition.q_width == pytest.approx(0.03e9)
    assert recipe.metadata["frame_time"] == pytest.approx(1.3e-3)
    assert recipe.metadata["energy"] == pytest.approx(7990.0)
    assert recipe.metadata["distance"] == pytest.approx(2.23)
    assert recipe.metadata["pixel_size"] == pytest.approx((108e-6, 108e-6))
    assert recipe.options.exclude_frames == (3, 10, 11, 12) and recipe.options.fit_model == "stretched"
    path = save_template(t, tmp_path / "t.yaml")
    text = path.read_text()
    assert "1.3ms" in text and "0.006/A" in text  # written in the units a person reads
    again = load_template(path)
    assert again.to_dict() == t.to_dict() and again.digest() == t.digest()


@pytest.mark.parametrize("bad, word", [
    ({"knd": "xpcs"}, "knd"),
    ({"kind": "saxs"}, "kind"),
    ({"xpcs": {"options": {"fit_modle": "single"}}}, "fit_modle"),
    ({"xpcs": {"options": {"fit_model": "triple"}}}, "fit_model"),
    ({"xpcs": {"metadata": {"frame_time": "fast"}}}, "fast"),
    ({"xpcs": {"metadata": {"frame_time": "-1ms"}}}, "positive"),
    ({"xpcs": {"partition": {"kind": "rois"}}}, "region"),
    ({"xpcs": {"partition": {"kind": "q_rings", "q_min": "0.01/A"}}}, "q_width"),
    ({"folder": "relative/path"}, "absolute"),
])
def test_a_wrong_template_is_refused_by_name(bad, word):
    with pytest.raises(InvalidInputError, match=word):
        Template.from_dict(bad)


def test_broken_template_files_are_refused_with_the_file_name(tmp_path):
    (tmp_path / "a.yaml").write_text("kind: [unclosed\n")
    with pytest.raises(InvalidInputError, match="a.yaml: not valid YAML"):
        load_template(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(InvalidInputError, match="b.yaml"):
        load_template(tmp_path / "b.yaml")
    with pytest.raises(InvalidInputError, match="cannot read"):
        load_template(tmp_path / "missing.yaml")


def test_the_nearest_folder_template_applies_and_edits_are_seen(tmp_path):
    store = TemplateStore(tmp_path / "templates")
    outer, inner = tmp_path / "data", tmp_path / "data" / "sample3"
    store.save(Template(kind="xpcs", folder=str(outer)))
    store.save(Template(kind="xpcs", folder=str(inner),
                        xpcs=XpcsRecipe(partition=PartitionSpec(kind="rois", rois=((0, 8, 0, 8),)))))
    assert store.for_path(inner / "scan.h5").folder == str(inner)
    assert store.for_path(outer / "other" / "scan.h5").folder == str(outer)
    assert store.for_path(tmp_path / "elsewhere.h5") is None
    assert store.for_path(tmp_path / "data-2" / "x.h5") is None  # a prefix is not a parent
    # a person edits a file by hand: seen at once; a broken one is reported, not used
    path = store.path_for(str(inner))
    path.write_text(path.read_text().replace("kind: rois", "kind: whole"))
    assert store.for_path(inner / "scan.h5").xpcs.partition.kind == "whole"
    path.write_text("folder: [broken\n")
    assert store.for_path(inner / "scan.h5").folder == str(outer)
    assert len(store.problems()) == 1 and path.name in store.problems()[0]


def test_a_recipe_gives_the_partition_it_describes():
    from speckle.io.dataset import Metadata

    md = Metadata(energy=8000.0, distance=2.23, pixel_size=(108e-6, 108e-6), beam_center=(64.0, 60.0))
    rings = PartitionSpec(kind="q_rings", n_rings=4, q_min=0.002e10, q_width=0.001e10).build((128, 128), md)
    assert rings.n_dynamic == 4 and rings.dynamic_q[0] == pytest.approx(0.0025e10, rel=0.05)
    assert PartitionSpec().build((128, 128), Metadata()).n_dynamic == 1  # no geometry: whole frame
    assert PartitionSpec().build((128, 128), md).n_dynamic == 8  # geometry known: 8 rings
    with pytest.raises(InvalidInputError, match="needs|energy|geometry|distance"):
        PartitionSpec(kind="q_rings").build((128, 128), Metadata())


# ---------------------------------------------------------------------- is it complete?
WRITER = textwrap.dedent("""
    import sys, time, h5py, numpy as np
    path, swmr = sys.argv[1], sys.argv[2] == "swmr"
    f = h5py.File(path, "w", libver="latest")
    d = f.create_dataset("entry/data/data", shape=(0, 8, 8), maxshape=(None, 8, 8), chunks=(4, 8, 8), dtype="u2")
    d.resize(40, axis=0); d[:] = 1
    if swmr:
        f.swmr_mode = True
    f.flush()
    print("open", flush=True)
    sys.stdin.readline()
    f.close()
""")


@pytest.mark.parametrize("mode, says", [("plain", "locked"), ("swmr", "SWMR")])
def test_an_hdf5_file_open_for_writing_is_not_complete(tmp_path, mode, says):
    path = tmp_path / "live.h5"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), mode],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "open"
        reason = writer_still_active(path)
        assert reason and says in reason
        assert probe(path).state == "writing"
        writer.stdin.write("\n")
        writer.stdin.flush()
        assert writer.wait(30) == 0
    finally:
        writer.kill()
    assert writer_still_active(path) is None
    assert probe(path).state == "complete"


def test_settling_waits_for_a_quiet_file_and_trusts_an_old_one(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10)
    s = Settling.first(os.stat(path), now=100.0)
    assert not s.settled(2.0, now=100.5)
    path.write_bytes(b"x" * 20)
    assert s.look(os.stat(path), now=101.0) and not s.settled(2.0, now=102.5)
    assert s.settled(2.0, now=103.1)
    old = tmp_path / "old.bin"
    old.write_bytes(b"y")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    s = Settling.first(os.stat(old), now=10.0)
    assert not s.settled(2.0, now=10.0)  # one look is not enough
    s.look(os.stat(old), now=10.5)
    assert s.settled(2.0, now=10.5)


def test_probe_tells_data_from_other_files(tmp_path):
    (tmp_path / "log.txt").write_text("hello")
    assert probe(tmp_path / "log.txt").state == "not-data"
    (tmp_path / "scan.h5").write_text("hello")  # a log with a data file's name: never data
    assert probe(tmp_path / "scan.h5").state == "refused"
    (tmp_path / "empty.h5").write_bytes(b"")  # created, nothing written yet: wait for it
    assert probe(tmp_path / "empty.h5").state == "unreadable"
    np.save(tmp_path / "ok.npy", frames(n=24))
    assert probe(tmp_path / "ok.npy").state == "complete"
    blob = (tmp_path / "ok.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(blob[: len(blob) - 100])
    assert probe(tmp_path / "cut.npy").state == "unreadable"


# ---------------------------------------------------------------------- index and layout
def test_index_lines_are_whole_and_a_cut_line_is_skipped(tmp_path):
    index = tmp_path / "index.jsonl"
    append_index(index, {"path": "/a", "verdict": "good"})
    with open(index, "a") as fh:
        fh.write('{"path": "/b", "verd')  # a line cut by a crash
    append_index(index, {"path": "/c", "error": "ünïcode ok"})
    assert [e["path"] for e in read_index(index)] == ["/a", "/c"]
    with pytest.raises(ValueError):
        append_index(index, {"path": "/d", "tau": float("nan")})  # never invalid JSON
    assert [e["path"] for e in read_index(index)] == ["/a", "/c"]


def test_results_never_go_into_a_watched_folder(tmp_path):
    with pytest.raises(InvalidInputError, match="must not contain"):
        ResultsLayout(tmp_path / "data" / "results", [tmp_path / "data"])
    with pytest.raises(InvalidInputError, match="must not contain"):
        ResultsLayout(tmp_path, [tmp_path / "data"])
    layout = ResultsLayout(tmp_path / "res", [tmp_path / "a" / "run", tmp_path / "b" / "run"])
    r1 = layout.result_folder(tmp_path / "a" / "run" / "s1" / "scan 7.h5")
    r2 = layout.result_folder(tmp_path / "b" / "run" / "s1" / "scan 7.h5")
    assert r1 != r2 and r1.name == "scan_7_h5" and r1.parent.name == "s1"


# ---------------------------------------------------------------------- the command line
def test_watch_refuses_bad_settings_with_one_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    cases = [
        (["watch", str(tmp_path / "nope"), "--results", str(tmp_path / "r")], "no such folder"),
        (["watch", str(data), "--results", str(data / "r")], "must not contain"),
        (["watch", str(data), "--results", str(tmp_path / "r"), "--template", "t.yaml",
          "--frame-time", "1ms"], "not both"),
        (["watch", str(data), "--results", str(tmp_path / "r"), "--cluster", "scheduler"],
         "address"),
    ]
    for argv, message in cases:
        out = subprocess.run(SPECKLE + argv, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, (argv, out.stderr)
        assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (data / "r").exists()


def _template_file(tmp_path) -> Path:
    return save_template(Template.from_dict(TEMPLATE), tmp_path / "template.yaml")


def test_watch_killed_mid_queue_and_restarted_loses_nothing_and_repeats_nothing(tmp_path):
    data, results = tmp_path / "data", tmp_path / "results"
    data.mkdir()
    for i in range(8):
        write_stack(data / f"scan_{i}.h5", seed=i, n=200)
    argv = SPECKLE + ["watch", str(data), "--results", str(results), "--cluster", "process",
                      "--template", str(_template_file(tmp_path)), "--settle", "0.5s"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_index(results, 2, timeout=120)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    first = read_index(results / "index.jsonl")
    assert 2 <= len(first) < 8, "the kill should come mid-queue"
    write_stack(data / "late.h5", seed=42, n=200)  # arrives while it is down
    out = subprocess.run(argv + ["--once"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    paths = [e["path"] for e in read_index(results / "index.jsonl")]
    expected = {str(data / f"scan_{i}.h5") for i in range(8)} | {str(data / "late.h5")}
    assert set(paths) == expected and len(paths) == len(expected)
    assert len(out.stdout.strip().splitlines()) == 9 - len(first)  # one line per dataset


def _g2(result_dir: Path) -> np.ndarray:
    with h5py.File(result_dir / "result.h5") as f:
        return f["xpcs/multitau/normalized_g2"][()]


def test_reprocess_on_two_dask_workers_equals_one_process_and_resumes(tmp_path):
    data = tmp_path / "beamtime"
    data.mkdir()
    for i in range(6):
        write_stack(data / f"scan_{i}.h5", seed=20 + i, n=160)
    (data / "readme.txt").write_text("sample: Au nanoparticles\n")
    template = str(_template_file(tmp_path))
    one, two = tmp_path / "one", tmp_path / "two"
    out = subprocess.run(SPECKLE + ["reprocess", str(data), "--results", str(one), "--template",
                                    template, "--cluster", "process"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "6/6 datasets" in out.stderr  # the progress bar reached the end
    out = subprocess.run(SPECKLE + ["reprocess", str(data), "--results", str(two), "--template",
                                    template, "--cluster", "local", "--workers", "2"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for i in range(6):
        name = f"beamtime/scan_{i}_h5"
        assert np.array_equal(_g2(one / name), _g2(two / name))
        a = json.loads((one / name / "summary.json").read_text())
        b = json.loads((two / name / "summary.json").read_text())
        assert {k: a[k] for k in ("verdict", "details")} == {k: b[k] for k in ("verdict", "details")}
    # again: everything is done with this template, nothing is analysed
    out = subprocess.run(SPECKLE + ["reprocess", str(data), "--results", str(one), "--template",
                                    template, "--cluster", "process"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == ""
    assert len(read_index(one / "index.jsonl")) == 6
    # a corrected template: interrupted part-way, then resumed; each file once with the new one
    corrected = Template.from_dict({**TEMPLATE, "xpcs": {**TEMPLATE["xpcs"],
                                                        "metadata": {"frame_time": "2ms"}}})
    path = save_template(corrected, tmp_path / "corrected.yaml")
    argv = SPECKLE + ["reprocess", str(data), "--results", str(one), "--template", str(path),
                      "--cluster", "process"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_index(one, 8, timeout=120)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    entries = read_index(one / "index.jsonl")[6:]
    assert sorted(e["path"] for e in entries) == sorted(str(data / f"scan_{i}.h5") for i in range(6))
    assert {e["template"] for e in entries} == {corrected.digest()}


# ---------------------------------------------------------------------- the engine
def test_local_workers_are_pinned_one_gpu_each(monkeypatch):
    from speckle.monitor.cluster import _PinGpu

    class Worker:
        def __init__(self, name):
            self.name = name

    pin = _PinGpu(["GPU-aaaa", "GPU-bbbb"])
    seen = []
    for name in (0, 1, 2):
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        pin.setup(Worker(name))
        seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
    assert seen == ["GPU-aaaa", "GPU-bbbb", "GPU-aaaa"]


def test_a_worker_killed_mid_analysis_is_an_error_entry_and_the_next_file_goes_on(tmp_path):
    """As when the kernel's out-of-memory killer takes a worker: its file is refused with the
    reason, the worker comes back, and the next file is analysed."""
    from monitor_helpers import config, running

    from speckle.monitor.state import StateDB

    data, results = tmp_path / "data", tmp_path / "results"
    data.mkdir()
    cfg = config(data, results, cluster={"type": "local", "workers": 1},
                 template={"kind": "xpcs", "xpcs": {"partition": {"kind": "whole"},
                                                    "options": {"twotime": True}}})
    with running(cfg) as (monitor, lines):
        pids = monitor.executor.client.run(os.getpid)
        write_stack(data / "victim.h5", seed=1, n=4000)  # long enough to be caught running
        db = StateDB(results / "state.sqlite", readonly=True)
        end = time.monotonic() + 60
        while time.monotonic() < end and (db.get(str(data / "victim.h5")) or {}).get("state") != "running":
            time.sleep(0.05)
        for pid in pids.values():
            os.kill(pid, signal.SIGKILL)
        [victim] = wait_for_index(results, 1, timeout=120)
        assert "died" in victim["error"] and "memory" in victim["error"], victim
        write_stack(data / "next.h5", seed=2)
        entries = wait_for_index(results, 2, timeout=120)
    assert "error" not in entries[1] and entries[1]["path"].endswith("next.h5"), entries


def test_nobody_else_can_use_the_monitors_dask_cluster(tmp_path):
    """Its scheduler speaks TLS with credentials only the monitor holds: a client of another
    account (a hub user's terminal) cannot connect and run code as the monitor."""
    from distributed import Client

    from monitor_helpers import config, running

    data = tmp_path / "data"
    data.mkdir()
    with running(config(data, tmp_path / "results", cluster={"type": "local", "workers": 1})) as (monitor, _):
        address = monitor.executor.client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        with pytest.raises(Exception):  # noqa: B017 - refused one way or another
            Client(address.replace("tls://", "tcp://"), timeout=5)
        with pytest.raises(Exception):  # noqa: B017
            Client(address, timeout=5)


# ---------------------------------------------------------------------- holograms
def test_a_hologram_is_recognised_reconstructed_and_refocused_with_the_folders_template(tmp_path):
    """An FTH hologram whose object lies 3 µm out of the reference plane: the monitor knows it
    is a hologram, reconstructs it and, with the folder's refocus settings (as the FTH
    dashboard's "Use for new files in this folder" saves them), finds the focus."""
    from test_fth import ENERGY, simulate_fth

    from monitor_helpers import config
    from speckle.imaging.fth import detect_cross_terms, reconstruct
    from speckle.monitor import Monitor

    um, pixel = 1e-6, 30e-9
    hologram, _ = simulate_fth("absorbing", pixel=pixel, defocus=3 * um, ref_radius=1.0,
                               photons=1e8, seed=1)
    data, results = tmp_path / "data", tmp_path / "results"
    data.mkdir()
    np.save(data / "holo_0001.npy", hologram.astype(np.float32))
    # the object's cross-term (left of the reference), as a person drags it in the dashboard
    image = reconstruct(hologram).image
    term = next(t for t in detect_cross_terms(image) if t.col < 128)
    r0, r1, c0, c1 = term.box
    template = {"kind": "auto", "refocus": {
        "energy": f"{ENERGY}eV", "pixel_size": f"{pixel / 1e-9:g}nm",
        "distances": ["-8um", "8um", 81], "region": [r0 - 4, r1 + 4, c0 - 4, c1 + 4]}}
    Monitor(config(data, results, template=template)).run_once(timeout=180)
    [entry] = read_index(results / "index.jsonl")
    assert entry["kind"] == "fth" and "error" not in entry, entry
    summary = json.loads((Path(entry["result"]) / "summary.json").read_text())
    assert abs(summary["details"]["focus_distance_m"] - (-3 * um)) < 0.5 * um, summary["details"]
    assert "in focus at -3" in entry["conclusion"] or "in focus at -2" in entry["conclusion"]
    folder = Path(entry["result"])
    assert {"result.h5", "refocus.h5", "focused.png", "preview_small.png", "thumb.png"} <= {
        p.name for p in folder.iterdir()}


def test_a_cdi_pattern_is_recognised_and_phased_with_a_verdict(tmp_path):
    """A diffraction pattern of a compact object (Poisson noise, a beamstop, dead pixels saved
    as NaN): no reference cross-terms, so CDI; phased with the defaults, judged."""
    from monitor_helpers import config
    from speckle.imaging.simulate import random_object, simulated_pattern, unmeasured_pixels
    from speckle.monitor import Monitor

    obj = random_object((256, 256), seed=3)
    pattern = simulated_pattern(obj, photons=1e9, seed=3).astype(np.float64)
    pattern[np.asarray(unmeasured_pixels(pattern.shape, seed=3), bool)] = np.nan
    data, results = tmp_path / "data", tmp_path / "results"
    data.mkdir()
    np.save(data / "pattern_0001.npy", pattern)
    Monitor(config(data, results, template={"kind": "auto"})).run_once(timeout=300)
    [entry] = read_index(results / "index.jsonl")
    assert entry["kind"] == "cdi" and "error" not in entry, entry
    assert entry["verdict"] in ("good", "marginal") and entry["conclusion"], entry
    with h5py.File(Path(entry["result"]) / "result.h5") as f:
        assert f["speckle"].attrs["kind"] == "cdi"


def test_the_monitor_seeds_cdi_so_a_file_is_reconstructed_the_same_each_time():
    from speckle.monitor.templates import MONITOR_CDI_SEED, Template

    assert Template(kind="cdi").options("cdi").seed == MONITOR_CDI_SEED
    assert Template(kind="cdi", cdi={"seed": None}).options("cdi").seed == MONITOR_CDI_SEED
    assert Template(kind="cdi", cdi={"seed": 7, "trials": 2}).options("cdi").seed == 7
