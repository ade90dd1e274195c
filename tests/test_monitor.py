"""The beamtime monitor for real: files written into temporary watched folders while a real
watcher (watchdog, inotify or polling) runs; every dataset analysed exactly once, after it is
complete; refusals recorded and the watcher going on."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from monitor_helpers import (FRAMES, TAU_FRAMES, config, running, start_slow_writer, wait_for_index,
                             write_stack)
from speckle.monitor import Monitor
from speckle.monitor.index import read_index
from speckle.monitor.state import StateDB


@pytest.fixture
def folders(tmp_path):
    data, results = tmp_path / "beamline", tmp_path / "results"
    data.mkdir()
    return data, results


def _result_tau(entry: dict) -> float:
    summary = json.loads((Path(entry["result"]) / "summary.json").read_text())
    return summary["details"]["bins"][0]["tau_s"]


def test_a_complete_stack_gives_one_verdict_line(folders):
    data, results = folders
    with running(config(data, results)) as (monitor, lines):
        write_stack(data / "scan_0001.h5")
        entries = wait_for_index(results, 1)
        time.sleep(1.5)  # nothing more comes
    entries = read_index(results / "index.jsonl")
    assert len(entries) == 1
    e = entries[0]
    assert e["path"] == str(data / "scan_0001.h5") and e["kind"] == "xpcs"
    assert e["verdict"] in ("good", "marginal", "bad") and e["summary"] and "error" not in e
    # the simulated field correlation time (1 ms frames) is found
    assert _result_tau(e) == pytest.approx(TAU_FRAMES * 1e-3, rel=0.25)
    folder = Path(e["result"])
    for name in ("result.h5", "g2.csv", "fits.csv", "summary.json", "template.yaml",
                 "thumb.png", "g2_small.png", "g2.png"):
        assert (folder / name).is_file(), name
    assert folder.is_relative_to(results)
    assert not [p for p in results.rglob(".*") if p.name != ".monitor.lock"]  # no partial folder left
    assert len(lines) == 1 and "scan_0001.h5" in lines[0] and e["verdict"].upper() in lines[0]
    # nothing was written into the watched folder
    assert sorted(p.name for p in data.iterdir()) == ["scan_0001.h5"]


def test_a_stack_written_slowly_is_analysed_once_after_it_is_complete(folders):
    data, results = folders
    path = data / "slow.h5"
    with running(config(data, results)) as (monitor, lines):
        writer = start_slow_writer(path, pause=0.3)  # 15 blocks, ~4.5 s, the file open all along
        out, _ = writer.communicate(timeout=60)
        closed = float(out.strip())
        entries = wait_for_index(results, 1)
        time.sleep(2.5)
    entries = read_index(results / "index.jsonl")
    assert len(entries) == 1, entries
    completed = entries[0]["completed_at"]
    from datetime import datetime
    assert datetime.fromisoformat(completed).timestamp() >= closed - 1.0  # whole-second precision
    summary = json.loads((Path(entries[0]["result"]) / "summary.json").read_text())
    assert summary["frames"] == FRAMES


def test_a_file_renamed_into_the_folder_is_analysed(folders, tmp_path):
    data, results = folders
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    write_stack(outside / "moved.h5", seed=3)
    with running(config(data, results)) as (monitor, lines):
        time.sleep(0.5)
        os.rename(outside / "moved.h5", data / "moved.h5")
        entries = wait_for_index(results, 1)
    assert [e["path"] for e in entries] == [str(data / "moved.h5")]
    assert "error" not in entries[0]


def test_corrupted_files_get_an_error_entry_and_the_watcher_goes_on(folders, tmp_path):
    data, results = folders
    good = write_stack(tmp_path / "good.h5")
    with running(config(data, results)) as (monitor, lines):
        (data / "notes.txt").write_text("beam dump at 03:12\n")  # not data: ignored, no entry
        (data / "scan_0002.h5").write_text("this is a log file with an .h5 name\n")
        blob = good.read_bytes()
        (data / "cut.h5").write_bytes(blob[: len(blob) // 2])  # truncated HDF5
        shutil.copy(good, data / "after.h5")
        entries = wait_for_index(results, 3, timeout=90)
        time.sleep(1.0)
    by_name = {Path(e["path"]).name: e for e in read_index(results / "index.jsonl")}
    assert set(by_name) == {"scan_0002.h5", "cut.h5", "after.h5"}
    assert "text" in by_name["scan_0002.h5"]["error"]
    assert by_name["cut.h5"]["error"]
    assert by_name["after.h5"]["kind"] == "xpcs" and "error" not in by_name["after.h5"]
    rows = {Path(r["path"]).name: r for r in StateDB(results / "state.sqlite").rows()}
    assert rows["notes.txt"]["state"] == "ignored"
    assert rows["cut.h5"]["state"] == "failed" and rows["after.h5"]["state"] == "done"


def test_twenty_files_at_once_are_each_analysed_exactly_once(folders, tmp_path):
    data, results = folders
    staged = tmp_path / "staged"
    staged.mkdir()
    for i in range(20):
        write_stack(staged / f"scan_{i:04d}.h5", seed=i, n=64)
    with running(config(data, results)) as (monitor, lines):
        for p in sorted(staged.iterdir()):
            shutil.copy(p, data / p.name)
        wait_for_index(results, 20, timeout=180)
        time.sleep(1.5)
    paths = [e["path"] for e in read_index(results / "index.jsonl")]
    assert len(paths) == 20 and len(set(paths)) == 20
    assert StateDB(results / "state.sqlite").counts()["done"] == 20


def test_polling_mode_finds_new_files(folders):
    data, results = folders
    with running(config(data, results, watch="polling", poll_interval=0.3)) as (monitor, lines):
        assert set(monitor.modes.values()) == {"polling"}
        (data / "sub").mkdir()
        write_stack(data / "sub" / "polled.h5")
        entries = wait_for_index(results, 1)
    assert entries[0]["path"] == str(data / "sub" / "polled.h5")
    # results mirror the folders
    assert Path(entries[0]["result"]).parent == results / "beamline" / "sub"


def test_a_restart_analyses_nothing_twice_and_misses_nothing(folders):
    data, results = folders
    write_stack(data / "a.h5", seed=1)
    Monitor(config(data, results)).run_once(timeout=60)
    assert len(read_index(results / "index.jsonl")) == 1
    write_stack(data / "b.h5", seed=2)  # arrives while the monitor is down
    Monitor(config(data, results)).run_once(timeout=60)
    entries = read_index(results / "index.jsonl")
    assert [Path(e["path"]).name for e in entries] == ["a.h5", "b.h5"]
    # a file changed after its analysis is analysed again
    write_stack(data / "a.h5", seed=5, n=FRAMES // 2)
    Monitor(config(data, results)).run_once(timeout=60)
    assert [Path(e["path"]).name for e in read_index(results / "index.jsonl")] == ["a.h5", "b.h5", "a.h5"]


def test_a_file_declaring_more_than_it_holds_is_stopped_in_bounded_time(folders):
    data, results = folders
    with h5py.File(data / "huge.h5", "w") as f:  # 10^5 frames of 1024^2 declared, none written
        f.create_dataset("entry/data/data", shape=(100_000, 1024, 1024), dtype="uint16",
                         chunks=(1, 1024, 1024))
    t0 = time.monotonic()
    Monitor(config(data, results, max_seconds=4.0)).run_once(timeout=120)
    entries = read_index(results / "index.jsonl")
    assert len(entries) == 1 and entries[0]["error"]
    assert time.monotonic() - t0 < 60


def test_the_dask_local_cluster_gives_the_same_results_as_one_process(folders, tmp_path):
    data, results = folders
    for i in range(3):
        write_stack(data / f"scan_{i}.h5", seed=10 + i)
    Monitor(config(data, tmp_path / "one")).run_once(timeout=120)
    Monitor(config(data, tmp_path / "dask", cluster={"type": "local", "workers": 2})).run_once(timeout=180)
    for i in range(3):
        one = tmp_path / "one" / "beamline" / f"scan_{i}_h5" / "result.h5"
        dask = tmp_path / "dask" / "beamline" / f"scan_{i}_h5" / "result.h5"
        with h5py.File(one) as a, h5py.File(dask) as b:
            g_a, g_b = a["xpcs/multitau/normalized_g2"][()], b["xpcs/multitau/normalized_g2"][()]
            assert np.array_equal(g_a, g_b)


def test_two_monitors_never_share_a_results_folder(folders):
    from speckle.errors import InvalidInputError

    data, results = folders
    with running(config(data, results)):
        with pytest.raises(InvalidInputError, match="another monitor .* is using the results folder"):
            Monitor(config(data, results)).run_once(timeout=10)
    Monitor(config(data, results)).run_once(timeout=30)  # free again once the first stopped


def test_hostile_names_and_a_file_rewritten_while_analysed(folders):
    data, results = folders
    with running(config(data, results)) as (monitor, lines):
        (data / "scan with spaces & <tags>.h5").write_bytes(b"")  # replaced below
        write_stack(data / "scan with spaces & <tags>.h5", seed=4)
        bad_name = os.fsencode(str(data)) + b"/scan_\xff\xfe.h5"  # not UTF-8: left out
        with open(bad_name, "wb") as fh:
            fh.write(b"\x89HDF\r\n\x1a\n")
        write_stack(data / "long.h5", seed=5, n=3000)
        db = StateDB(results / "state.sqlite", readonly=True)
        end = time.monotonic() + 60
        while time.monotonic() < end and (db.get(str(data / "long.h5")) or {}).get("state") != "running":
            time.sleep(0.05)
        write_stack(data / "long.h5", seed=6, n=FRAMES)  # rewritten while it is analysed
        end = time.monotonic() + 120
        while time.monotonic() < end:
            entries = read_index(results / "index.jsonl")
            if len([e for e in entries if e["path"].endswith("long.h5")]) == 2:
                break
            time.sleep(0.2)
        time.sleep(1.0)
    entries = read_index(results / "index.jsonl")
    names = [Path(e["path"]).name for e in entries]
    assert sorted(names) == ["long.h5", "long.h5", "scan with spaces & <tags>.h5"], names
    assert all("error" not in e for e in entries), entries
    first, second = [e for e in entries if e["path"].endswith("long.h5")]
    assert second["size"] != first["size"]  # the second analysis is of the new content
    summary = json.loads((Path(second["result"]) / "summary.json").read_text())
    assert summary["frames"] == FRAMES  # the result folder holds the later analysis
