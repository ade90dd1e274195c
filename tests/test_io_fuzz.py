"""Hostile and damaged files against every reader: refused with one line within 2 s, nothing written.

Hypothesis mutates valid files of every format (truncations, bit flips, overwritten runs) and
makes headers that declare giant dimensions; fixed cases cover link loops, links out of the
file, compression bombs, pickles and hostile file names. A reader may open a damaged file when
what it declares is still consistent (a flipped pixel value); then reading every frame must
either work or be refused the same way. Anything else that escapes (a library's OSError,
ValueError, MemoryError...) is a failure.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import time
import zipfile
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest
import tifffile
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speckle.errors import SpeckleError
from speckle.io.aps_result import read_aps_result_g2
from speckle.io.open import open_dataset
from speckle.xpcs.partitions import read_aps_qmap

LIMIT_S = 2.0
FRAMES = (np.arange(6 * 16 * 12) % 251).astype(np.uint16).reshape(6, 16, 12)
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _h5(**kw) -> bytes:
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.create_dataset("/entry/data/data", data=FRAMES, **kw)
        f["/entry/instrument/detector/frame_time"] = 1e-3
    return buf.getvalue()


def _tiff() -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, FRAMES)
    return buf.getvalue()


def _fits() -> bytes:
    buf = io.BytesIO()
    fits.PrimaryHDU(FRAMES.astype(np.int16)).writeto(buf)
    return buf.getvalue()


def _npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, FRAMES)
    return buf.getvalue()


def _npz() -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, data=FRAMES)
    return buf.getvalue()


def _qmap() -> bytes:
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        dyn = np.ones((16, 12), np.uint32)
        dyn[:, 6:] = 2
        f["/qmap/dynamic_roi_map"] = dyn
        f["/qmap/static_roi_map"] = dyn
        f["/qmap/mask"] = np.ones((16, 12), np.uint8)
    return buf.getvalue()


def _result() -> bytes:
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f["/xpcs/multitau/delay_list"] = np.arange(1, 9, dtype=float)
        f["/xpcs/multitau/normalized_g2"] = np.ones((8, 2))
        f["/xpcs/multitau/normalized_g2_err"] = np.full((8, 2), 0.01)
    return buf.getvalue()


def read_frames(path) -> None:
    with open_dataset(path) as ds:
        for _ in ds.iter_chunks(prefetch=True):
            pass


#: name -> (content, the reader that takes it)
SEEDS = {
    "h5-contiguous": (_h5(), read_frames),
    "h5-gzip": (_h5(chunks=(2, 16, 12), compression="gzip"), read_frames),
    "h5-bitshuffle-lz4": (_h5(chunks=(2, 16, 12), **hdf5plugin.Bitshuffle()), read_frames),
    "tiff": (_tiff(), read_frames),
    "fits": (_fits(), read_frames),
    "npy": (_npy(), read_frames),
    "npz": (_npz(), read_frames),
    "qmap": (_qmap(), read_aps_qmap),
    "result": (_result(), read_aps_result_g2),
}


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def refused_or_read(path, reader=read_frames) -> str | None:
    """Run ``reader(path)``: it works, or raises a SpeckleError of one line, within 2 s, and
    writes nothing beside the file. Returns the message (None when read)."""
    folder = Path(path).parent
    before = _listing(folder)
    t0 = time.monotonic()
    message = None
    try:
        reader(path)
    except SpeckleError as exc:
        message = str(exc)
        assert message and "\n" not in message and "\r" not in message, repr(message)
    elapsed = time.monotonic() - t0
    assert elapsed < LIMIT_S, f"{elapsed:.2f} s for {path}: {message}"
    assert _listing(folder) == before, "the reader wrote something"
    return message


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _case(work: Path, name: str, content: bytes, suffix: str = ".dat") -> Path:
    folder = work / f"{name}-{os.urandom(4).hex()}"
    folder.mkdir()
    path = folder / f"data{suffix}"
    path.write_bytes(content)
    return path


def test_every_seed_reads(work):
    for name, (content, reader) in SEEDS.items():
        assert refused_or_read(_case(work, name, content), reader) is None, name


@FUZZ
@given(name=st.sampled_from(sorted(SEEDS)), data=st.data())
def test_truncated_files(work, name, data):
    content, reader = SEEDS[name]
    keep = data.draw(st.integers(0, len(content) - 1), label="keep")
    refused_or_read(_case(work, name, content[:keep]), reader)


@FUZZ
@given(name=st.sampled_from(sorted(SEEDS)), data=st.data())
def test_bit_flips(work, name, data):
    content, reader = SEEDS[name]
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(content) - 1), st.integers(0, 7)),
                               min_size=1, max_size=12), label="flips")
    damaged = bytearray(content)
    for offset, bit in flips:
        damaged[offset] ^= 1 << bit
    refused_or_read(_case(work, name, bytes(damaged)), reader)


@FUZZ
@given(name=st.sampled_from(sorted(SEEDS)), data=st.data())
def test_overwritten_runs(work, name, data):
    content, reader = SEEDS[name]
    start = data.draw(st.integers(0, len(content) - 1), label="start")
    run = data.draw(st.binary(min_size=1, max_size=64), label="run")
    damaged = content[:start] + run + content[start + len(run):]
    refused_or_read(_case(work, name, damaged[:len(content)]), reader)


# --- headers that declare giant dimensions -----------------------------------------------------

DIM = st.one_of(st.integers(1, 64), st.integers(2**16, 2**40))


@FUZZ
@given(shape=st.tuples(DIM, DIM, DIM), extra=st.integers(0, 4096))
def test_npy_declaring_giant_dimensions(work, shape, extra):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<u2", "fortran_order": False, "shape": shape})
    refused_or_read(_case(work, "npy-giant", buf.getvalue() + bytes(extra)))


@FUZZ
@given(shape=st.tuples(DIM, DIM, DIM), bitpix=st.sampled_from([8, 16, 32, -32, -64]))
def test_fits_declaring_giant_dimensions(work, shape, bitpix):
    cards = ["SIMPLE  =                    T", f"BITPIX  = {bitpix:>20}", "NAXIS   =                    3"]
    cards += [f"NAXIS{i + 1}  = {n:>20}" for i, n in enumerate(reversed(shape))]
    header = "".join(c.ljust(80) for c in cards + ["END"]).ljust(2880).encode()
    refused_or_read(_case(work, "fits-giant", header + bytes(2880)))


@FUZZ
@given(shape=st.tuples(st.integers(1, 10**7), st.integers(16, 4096), st.integers(16, 4096)),
       layout=st.sampled_from(["contiguous", "chunked", "gzip"]), written=st.integers(0, 2))
def test_hdf5_declaring_more_than_it_holds(work, shape, layout, written):
    if layout == "contiguous":
        written = 0  # one write allocates all of it: the file then holds what it declares
    path = _case(work, "h5-giant", b"")
    kw = {} if layout == "contiguous" else {"chunks": (1, *shape[1:])}
    if layout == "gzip":
        kw["compression"] = "gzip"
    try:
        with h5py.File(path, "w") as f:
            ds = f.create_dataset("/entry/data/data", shape=shape, dtype=np.uint16, **kw)
            for i in range(min(written, shape[0])):
                ds[i] = 1
    except (ValueError, OSError):
        return  # HDF5 itself refuses to make it (a contiguous dataset past its address space)
    message = refused_or_read(path)
    if shape[0] - written > 1000 or (shape[0] - written) * shape[1] * shape[2] * 2 > 2**30:
        assert message is not None  # never read as zeros


@FUZZ
@given(width=st.integers(1, 65535), height=st.integers(1, 65535))
def test_tiff_declaring_other_dimensions(work, width, height):
    content = bytearray(_tiff())
    page = tifffile.TiffFile(io.BytesIO(bytes(content))).pages[0]
    for tag, value in (("ImageWidth", width), ("ImageLength", height)):
        t = page.tags[tag]
        fmt = {3: "<H", 4: "<I"}[t.dtype]
        struct.pack_into(fmt, content, t.valueoffset, value)
    refused_or_read(_case(work, "tiff-dims", bytes(content)))


@FUZZ
@given(declared=st.integers(2**20, 2**45))
def test_zip_member_declaring_another_size(work, declared):
    content = bytearray(_npz())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = content.find(signature)
        struct.pack_into("<I", content, at + offset, min(declared, 2**32 - 1))
    refused_or_read(_case(work, "zip-size", bytes(content)))


# --- fixed hostile cases ----------------------------------------------------------------------

def _h5_file(path: Path, build) -> Path:
    with h5py.File(path, "w") as f:
        build(f)
    return path


def _soft_loop(f):
    f["/entry/data/data"] = h5py.SoftLink("/a")
    f["/a"] = h5py.SoftLink("/b")
    f["/b"] = h5py.SoftLink("/a")


def _self_loop(f):
    f["/entry/data/data"] = h5py.SoftLink("/entry/data/data")


def _hard_cycle(f):
    g = f.create_group("/entry/data")
    g["again"] = g  # a group that contains itself
    f["/other"] = FRAMES


def _external(f):
    f["/entry/data/data"] = h5py.ExternalLink("/etc/passwd", "/x")


def _external_storage(f):
    f.create_dataset("/entry/data/data", shape=(6, 16, 12), dtype=np.uint16,
                     external=[("/etc/shadow", 0, h5py.h5f.UNLIMITED)])


def _virtual_elsewhere(f):
    layout = h5py.VirtualLayout(shape=(6, 16, 12), dtype=np.uint16)
    layout[:] = h5py.VirtualSource("/tmp/another-user/frames.h5", "/data", shape=(6, 16, 12))
    f.create_virtual_dataset("/entry/data/data", layout)


def _nexus_loop(f):
    f.attrs["default"] = "entry"
    entry = f.create_group("entry")
    entry.attrs["NX_class"] = "NXentry"
    entry.attrs["default"] = "data"
    entry["data"] = h5py.SoftLink("/entry")


def _zstd_bomb(f):
    chunk = (1, 4096, 4096)
    ds = f.create_dataset("/entry/data/data", shape=(200, *chunk[1:]), dtype=np.uint16,
                          chunks=chunk, **hdf5plugin.Zstd(clevel=19))
    ds[0] = 0
    _, raw = ds.id.read_direct_chunk((0, 0, 0))
    for i in range(1, 200):
        ds.id.write_direct_chunk((i, 0, 0), raw)


def _fine_chunks(f):
    f.create_dataset("/entry/data/data", shape=(2**20 + 1, 1, 1), dtype=np.uint16, chunks=(1, 1, 1))
    f["/entry/data/data"][0] = 1


def _object_dtype(f):
    f.create_dataset("/entry/data/data", data=np.array([[b"x", b"y"], [b"z", b"w"]], dtype=object),
                     dtype=h5py.string_dtype())


HDF5_CASES = {"soft-link-loop": _soft_loop, "self-loop": _self_loop, "hard-link-cycle": _hard_cycle,
              "external-link": _external, "external-storage": _external_storage,
              "virtual-elsewhere": _virtual_elsewhere, "nexus-default-loop": _nexus_loop,
              "zstd-bomb": _zstd_bomb, "strings": _object_dtype, "fine-chunks": _fine_chunks}


@pytest.mark.parametrize("case", sorted(HDF5_CASES))
def test_hostile_hdf5_is_refused(work, case):
    path = _h5_file(_case(work, case, b"", ".h5"), HDF5_CASES[case])
    assert refused_or_read(path) is not None


def _zip_bomb() -> bytes:
    """64 MiB of zeros in a few hundred bytes (bzip2): no detector data compresses like that."""
    buf = io.BytesIO()
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<u2", "fortran_order": False,
                                                "shape": (128, 512, 512)})
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_BZIP2) as z, z.open("data.npy", "w") as m:
        m.write(head.getvalue())
        m.write(bytes(64 * 2**20))
    return buf.getvalue()


def _pickled_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([{"x": 1}, None], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _pickle_in_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("data.pkl", pickle.dumps({"frames": [1, 2, 3]}))
    return buf.getvalue()


def _pickled_npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, data=np.array([object(), 1], dtype=object))
    return buf.getvalue()


OTHER_CASES = {"zip-bomb": _zip_bomb, "pickled-npy": _pickled_npy, "pickle-in-zip": _pickle_in_zip,
               "pickled-npz": _pickled_npz}


@pytest.mark.parametrize("case", sorted(OTHER_CASES))
def test_bombs_and_pickles_are_refused(work, case):
    assert refused_or_read(_case(work, case, OTHER_CASES[case]())) is not None


@pytest.mark.parametrize("name", ["line\nbreak.h5", "tab\tand\x1bescape.h5", "bell\x07.h5",
                                  "sep\u2028arator.h5", "x" * 300 + ".h5"])
def test_hostile_file_names_are_refused_with_one_line(work, name):
    folder = work / f"names-{os.urandom(4).hex()}"
    folder.mkdir()
    try:
        (folder / name).write_bytes(SEEDS["h5-contiguous"][0])
    except OSError:
        pass  # too long for the file system: the reader must still say so in one line
    assert refused_or_read(folder / name) is not None


def test_nul_dot_dot_loops_and_devices_in_paths(work):
    folder = work / f"paths-{os.urandom(4).hex()}"
    folder.mkdir()
    (folder / "ok.h5").write_bytes(SEEDS["h5-contiguous"][0])
    assert refused_or_read(str(folder / "ok.h5") + "\0.h5") is not None
    os.symlink(folder / "b", folder / "a")
    os.symlink(folder / "a", folder / "b")
    assert refused_or_read(folder / "a") is not None  # a symlink loop
    os.mkfifo(folder / "fifo.h5")
    assert refused_or_read(folder / "fifo.h5") is not None  # would block forever
    assert refused_or_read("/dev/zero") is not None
    # .. is only a path: what it names is read like any other file
    (folder / "sub").mkdir()
    assert refused_or_read(folder / "sub" / ".." / "ok.h5") is None
