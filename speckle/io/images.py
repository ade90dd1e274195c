"""Single images in, imaging results out: the file layer of FTH, CDI and propagation.

:func:`read_image` turns anything :func:`speckle.io.open.open_dataset` reads into one 2D
float64 image (a stack is averaged unless one frame is asked for); :func:`read_mask` reads a
mask of unmeasured pixels in any natural form (bools included). :func:`write_image_result`
writes the arrays and parameters of an imaging result as one HDF5 file, atomically (see
:func:`speckle.io.atomic.atomic_path`); :func:`read_image_result` reads such a file back. The
workflow's results (:mod:`speckle.imaging.workflow`) go through
:mod:`speckle.io.imaging_result`, which fixes one versioned layout per kind on top of these;
:func:`write_reconstruction_zip` writes a reconstruction's parts as ``.npy`` files in a ZIP.

Result layout::

    /                 @creator = "speckle <version>"
    /speckle          @kind = "fth" | "cdi" | "propagation", plus every other attribute given
    /speckle/<name>   one dataset per array (complex stays complex, bool stays bool)

Attribute values that are not a string, a number or a bool (dicts, lists, tuples, None, arrays)
are stored as JSON text; their names are listed in the JSON list ``/speckle@_json`` so that
:func:`read_image_result` decodes them again.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from .. import __version__
from ..backend import array_module, asnumpy
from ..errors import InvalidInputError, UnsafeFileError
from .atomic import atomic_path
from .compressed import create_compressed
from .dataset import ArrayDataset, Dataset, Metadata
from .jsontext import to_json
from .open import open_dataset
from .read_hdf5 import ensure_filters, open_h5_file

__all__ = ["KINDS", "image_result_kind", "read_image", "read_image_result", "read_mask",
           "write_image_result", "write_reconstruction_zip"]

#: The kinds of imaging result, stored in ``/speckle@kind``.
KINDS = ("fth", "cdi", "propagation")

GROUP = "speckle"
_JSON_LIST = "_json"  # reserved attribute: names of the attributes stored as JSON text
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*\Z")
_COMPRESS_FROM = 1 << 16  # arrays with at least this many elements are gzip-compressed
_MAX_ATTR_BYTES = 60_000  # HDF5 keeps attributes in the object header (64 KiB at most)
_MAX_READ_BYTES = 16 * 2**30  # sanity limit when reading a result back


# -- reading an image ------------------------------------------------------------------------

def read_image(source, *, dataset=None, frame: int | None = None,
               metadata: dict | None = None) -> tuple[np.ndarray, Metadata]:
    """Read one 2D image (float64) from a file, a dataset or an array.

    Parameters
    ----------
    source : str, path-like, Dataset or array_like
        Anything :func:`~speckle.io.open.open_dataset` opens (HDF5/NeXus, TIFF, FITS, npy,
        npz...), an already opened :class:`~speckle.io.dataset.Dataset` (left open), or a
        (rows, cols) / (frames, rows, cols) array of real numbers.
    dataset : str or int, optional
        Which array inside a container file (see :func:`~speckle.io.open.open_dataset`).
    frame : int, optional
        Read only this frame (negative counts from the end). By default all frames are
        averaged.
    metadata : dict, optional
        Overrides of :class:`~speckle.io.dataset.Metadata` fields (SI units).

    Returns
    -------
    image : numpy.ndarray
        (rows, cols) float64. Non-finite pixels (NaN, ±inf) count as missing: the average of a
        stack uses each pixel's finite values only, and a pixel with none is NaN.
    metadata : Metadata
        The source's metadata with the overrides applied.

    Raises
    ------
    InvalidInputError
        When the source cannot be read, ``frame`` is out of range, or the image is empty, has a
        single pixel, or has no finite pixel at all.
    """
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidInputError(f"metadata overrides must be a dict of field values, got "
                                f"{type(metadata).__name__}")
    if isinstance(source, Dataset):
        ds, owned = source, False
    elif isinstance(source, (str, Path)) or hasattr(source, "__fspath__"):
        ds, owned = open_dataset(source, dataset=dataset), True
    else:
        array = asnumpy(source) if array_module(source) is not np else np.asarray(source)
        ds, owned = ArrayDataset(array), True
    try:
        md = ds.metadata.updated(**metadata) if metadata else ds.metadata
        image = _one_image(ds, frame)
        where = ds.source
    finally:
        if owned:
            ds.close()
    _check_image(image, where)
    return image, md


def _one_image(ds: Dataset, frame) -> np.ndarray:
    """The chosen frame, or the finite-value mean of all frames, as float64."""
    if frame is not None:
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
            raise InvalidInputError(f"frame must be a whole number, got {frame!r}")
        index = int(frame) + (ds.n_frames if frame < 0 else 0)
        if not 0 <= index < ds.n_frames:
            raise InvalidInputError(
                f"{ds.source}: frame {int(frame)} does not exist; the data has {ds.n_frames} "
                f"frame(s), numbered 0 to {ds.n_frames - 1}")
        image = np.array(ds.frame(index), dtype=np.float64)
        image[~np.isfinite(image)] = np.nan
        return image
    total = np.zeros(ds.frame_shape, np.float64)
    count = np.zeros(ds.frame_shape, np.int64)
    for _, chunk in ds.iter_chunks():
        chunk = np.asarray(chunk, dtype=np.float64)
        finite = np.isfinite(chunk)
        total += np.where(finite, chunk, 0.0).sum(axis=0)
        count += finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _check_image(image: np.ndarray, where) -> None:
    if image.ndim != 2:
        raise InvalidInputError(f"{where}: expected one 2D image, got shape {image.shape}")
    if image.size == 0:
        raise InvalidInputError(f"{where}: the image is empty (shape {image.shape}); "
                                "give a file with data")
    if image.size < 2:
        raise InvalidInputError(f"{where}: the image has a single pixel; an image needs at "
                                "least 2 pixels")
    if not np.isfinite(image).any():
        raise InvalidInputError(f"{where}: the image has no finite value (all NaN or "
                                "infinite); check the file or the chosen frame")


# -- reading a mask --------------------------------------------------------------------------

_MAX_MASK_BYTES = 2**31  # a mask larger than this is not a detector mask


def read_mask(source, shape=None, *, dataset=None) -> np.ndarray:
    """Read a mask of unmeasured pixels in any natural form: True where not measured.

    Parameters
    ----------
    source : str, path-like or array_like
        A file in any format :func:`read_image` reads, holding bools (``np.save`` of a bool
        array, an HDF5 bool dataset), integers or floats, or such an array. Non-zero and NaN
        mean unmeasured; a stack is unmeasured where any frame is.
    shape : (rows, cols), optional
        The pattern's shape, which the mask must have.
    dataset : str, optional
        Which array inside a container file.

    Returns
    -------
    numpy.ndarray
        bool, (rows, cols).

    Raises
    ------
    InvalidInputError
        When the file cannot be read as a mask, or its shape differs from ``shape``.
    """
    if isinstance(source, (str, Path)) or hasattr(source, "__fspath__"):
        flagged = _read_bool_file(source, dataset)
        if flagged is None:
            with open_dataset(source, dataset=dataset) as ds:
                flagged = np.zeros(ds.frame_shape, bool)
                for _, chunk in ds.iter_chunks():
                    chunk = np.asarray(chunk, dtype=np.float64)
                    flagged |= (np.nan_to_num(chunk, nan=1.0) != 0).any(axis=0)
        where = str(source)
    else:
        array = np.asarray(asnumpy(source) if array_module(source) is not np else source)
        if array.dtype.kind not in "biuf":
            raise InvalidInputError(f"a mask holds bools or numbers (non-zero = unmeasured), "
                                    f"not {array.dtype}")
        flagged = np.nan_to_num(array.astype(np.float64), nan=1.0) != 0
        if flagged.ndim == 3:
            flagged = flagged.any(axis=0)
        where = "the mask"
    if flagged.ndim != 2:
        raise InvalidInputError(f"{where}: a mask is one 2D image, got shape {flagged.shape}")
    if shape is not None and flagged.shape != tuple(shape):
        raise InvalidInputError(f"{where} is {flagged.shape[0]}×{flagged.shape[1]} but the "
                                f"pattern is {shape[0]}×{shape[1]}; give a mask of the same "
                                "size")
    return flagged


def _read_bool_file(path, dataset) -> np.ndarray | None:
    """A bool array stored in a .npy or HDF5 file (which the frame readers refuse), else None."""
    from .read_hdf5 import _locate  # noqa: PLC0415 - the HDF5 reader's own dataset rules
    from .read_numpy import read_npy_header  # noqa: PLC0415
    from .sniff import sniff_format  # noqa: PLC0415

    fmt = sniff_format(path)
    if fmt == "npy":
        with open(path, "rb") as fh:
            shape, _, dtype, _ = read_npy_header(fh, str(path))
        if dtype != np.bool_:
            return None
        if int(np.prod(shape)) > _MAX_MASK_BYTES:
            raise UnsafeFileError(f"{path}: a mask of shape {shape} is too large")
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{path}: damaged .npy mask ({exc})") from None
    elif fmt == "hdf5":
        with open_h5_file(path, "an image file (.h5) holding the mask") as f:
            try:
                node = _locate(f, dataset, str(path))
            except InvalidInputError:
                if dataset is not None:
                    raise
                found = []  # the frame rules look at numbers only: the one bool image
                f.visititems(lambda name, obj: found.append(obj) if isinstance(
                    obj, h5py.Dataset) and obj.dtype == np.bool_ and obj.ndim in (2, 3)
                    else None)
                if len(found) != 1:
                    raise
                node = found[0]
            if node.dtype != np.bool_:
                return None
            if node.size > _MAX_MASK_BYTES:
                raise UnsafeFileError(f"{path}: a mask of shape {node.shape} is too large")
            ensure_filters(node)
            data = node[()]
    else:
        return None
    data = np.asarray(data, dtype=bool)
    while data.ndim > 2 and data.shape[0] == 1:
        data = data[0]
    return data.any(axis=0) if data.ndim == 3 else data


# -- writing a result ------------------------------------------------------------------------

def write_image_result(path, arrays: Mapping[str, object],
                       attrs: Mapping[str, object] | None = None) -> Path:
    """Write an imaging result as one HDF5 file, complete or absent.

    Parameters
    ----------
    path : str or path-like
        Destination; its folder must exist. An older file of that name is replaced only when
        the whole new file was written.
    arrays : mapping of str to array
        numpy or cupy arrays (or array_likes) of bools, integers, reals or complex numbers,
        any shape; each becomes the dataset ``/speckle/<name>``. Names use letters, digits,
        ``_``, ``.`` and ``-`` (no ``/``) and do not start with ``.`` or ``-``.
    attrs : mapping of str to object
        Must include ``"kind"``, one of :data:`KINDS`. Strings, numbers and bools are stored as
        HDF5 attributes of ``/speckle``; dicts, lists, tuples, None and arrays as JSON text
        (non-finite floats inside them become null). Names must not start with ``_``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InvalidInputError
        For a bad name, a missing or unknown kind, an array that is not numeric, an attribute
        value that cannot be stored, or a missing destination folder. Everything is checked
        before the file is created.
    """
    attrs = dict(attrs or {})
    kind = attrs.get("kind")
    if kind not in KINDS:
        raise InvalidInputError(
            f"the result needs attrs['kind'] set to one of {', '.join(KINDS)}; got {kind!r}")
    if not isinstance(arrays, Mapping):
        raise InvalidInputError(f"arrays must be a mapping of names to arrays, got "
                                f"{type(arrays).__name__}")
    host = {_check_name(name, "array"): _host_array(name, value)
            for name, value in arrays.items()}
    plain, as_json = {}, {}
    for name, value in attrs.items():
        _check_name(name, "attribute")
        stored = _attr_value(name, value)
        (plain if not isinstance(stored, _Json) else as_json)[name] = stored
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["creator"] = f"speckle {__version__}"
        group = f.create_group(GROUP)
        for name, value in plain.items():
            group.attrs[name] = value
        for name, value in as_json.items():
            group.attrs[name] = str(value)
        group.attrs[_JSON_LIST] = json.dumps(sorted(as_json))
        for name, data in host.items():
            _write_array(group, name, data)
    return Path(path)


class _Json(str):
    """An attribute value already encoded as JSON text."""


def _check_name(name, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInputError(
            f"{what} name {name!r} is not allowed; use letters, digits, '_', '.' and '-' "
            "(no '/'), starting with a letter, digit or '_'")
    if what == "attribute" and name.startswith("_"):
        raise InvalidInputError(f"attribute name {name!r} is reserved (names starting with '_' "
                                "are speckle's own); rename it")
    return name


def _host_array(name: str, value) -> np.ndarray:
    """``value`` as a numpy array of a dtype HDF5 stores faithfully."""
    try:
        data = asnumpy(value) if array_module(value) is not np else np.asarray(value)
    except Exception as exc:
        raise InvalidInputError(f"array {name!r} cannot be converted to an array "
                                f"({exc.__class__.__name__}: {exc})") from None
    kind = data.dtype.kind
    if kind not in "biufc":
        raise InvalidInputError(
            f"array {name!r} has data of type {data.dtype}; only bools and numbers (real or "
            "complex) are stored as arrays; put text in attrs")
    if kind == "c" and data.dtype.itemsize > 16:
        data = data.astype(np.complex128)
    elif kind == "f" and data.dtype.itemsize > 8:
        data = data.astype(np.float64)
    return data


def _attr_value(name: str, value):
    if isinstance(value, (bool, np.bool_)):
        return np.bool_(value)
    if isinstance(value, (int, np.integer)):
        if not -2**63 <= int(value) < 2**63:
            raise InvalidInputError(f"attribute {name!r} = {value} does not fit in 64 bits; "
                                    "store it as text")
        return np.int64(value)
    if isinstance(value, (float, np.floating)):
        return np.float64(value)
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInputError(f"attribute {name!r} contains a NUL character, which HDF5 "
                                    "text cannot hold; remove it")
        text = value
    else:
        if isinstance(value, (complex, np.complexfloating)):
            raise InvalidInputError(f"attribute {name!r} is complex; store real and imaginary "
                                    "parts separately or as an array")
        text = _Json(_to_json(name, value))
    if len(text.encode("utf-8")) > _MAX_ATTR_BYTES:
        raise InvalidInputError(
            f"attribute {name!r} is larger than {_MAX_ATTR_BYTES} bytes; store large values "
            "as arrays")
    return text


def _to_json(name: str, value) -> str:
    try:
        return to_json(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"attribute {name!r} cannot be stored as JSON ({exc})") from None


def _write_array(group: h5py.Group, name: str, data: np.ndarray) -> None:
    if data.size >= _COMPRESS_FROM:
        create_compressed(group, name, data)
    else:
        group.create_dataset(name, data=data)


def write_reconstruction_zip(path, obj, picture: bytes, support=None) -> Path:
    """A ZIP of a reconstruction: real and imaginary parts (and support) as .npy, a PNG.

    Written atomically (complete or absent). Members: ``reconstruction_real.npy``,
    ``reconstruction_imag.npy``, ``support.npy`` (when given) and ``reconstruction.png``.

    Parameters
    ----------
    path : path-like
    obj : complex array, (rows, cols)
    picture : bytes
        PNG.
    support : bool array, optional

    Returns
    -------
    pathlib.Path
    """
    data = np.asarray(asnumpy(obj))
    members = {"reconstruction_real.npy": np.ascontiguousarray(data.real),
               "reconstruction_imag.npy": np.ascontiguousarray(data.imag)}
    if support is not None:
        members["support.npy"] = np.asarray(asnumpy(support), dtype=bool)
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, array in members.items():
                with io.BytesIO() as buf:
                    np.save(buf, array, allow_pickle=False)
                    zf.writestr(name, buf.getvalue())
            zf.writestr("reconstruction.png", picture)
    return Path(path)


# -- reading a result back -------------------------------------------------------------------

def image_result_kind(path) -> str | None:
    """The kind of an imaging result file ("fth", "cdi", "propagation"), or None if not one.

    Parameters
    ----------
    path : path-like
        Any file; only HDF5 files with a ``/speckle`` group of a known kind count.
    """
    path = Path(path)
    try:
        if not path.is_file() or not h5py.is_hdf5(path):
            return None
        with h5py.File(path, "r") as f:
            if not isinstance(f.get(GROUP, getlink=True), h5py.HardLink) or \
                    not isinstance(f[GROUP], h5py.Group):
                return None
            kind = f[GROUP].attrs.get("kind")
    except (OSError, ValueError):
        return None
    if isinstance(kind, bytes):
        kind = kind.decode("utf-8", "replace")
    return kind if kind in KINDS else None


def read_image_result(path) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """Read a file written by :func:`write_image_result`.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    arrays : dict of str to numpy.ndarray
        Every dataset of ``/speckle``.
    attrs : dict of str to object
        Every attribute of ``/speckle`` (``"kind"`` included) as Python values: str, int,
        float, bool, or the decoded JSON (dict, list, None...).

    Raises
    ------
    InvalidInputError
        When the file is missing, not HDF5, has no ``/speckle`` group, or holds links to other
        files or non-numeric datasets there.
    """
    source = str(path)
    with open_h5_file(path, "a speckle imaging result (.h5)") as f:
        link = f.get(GROUP, getlink=True)
        if not isinstance(link, h5py.HardLink) or not isinstance(f[GROUP], h5py.Group):
            raise InvalidInputError(f"{source}: no /{GROUP} group; not a speckle imaging result")
        group = f[GROUP]
        attrs = _read_attrs(group, source)
        arrays = {}
        total = 0
        for name in group:
            link = group.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):
                raise UnsafeFileError(f"{source}: /{GROUP}/{name} is a link; speckle results "
                                      "hold their arrays themselves")
            obj = group[name]
            if not isinstance(obj, h5py.Dataset):
                continue
            if obj.dtype.kind not in "biufc":
                raise InvalidInputError(
                    f"{source}: /{GROUP}/{name} holds {obj.dtype}, not numbers")
            total += obj.size * obj.dtype.itemsize
            if total > _MAX_READ_BYTES:
                raise UnsafeFileError(f"{source}: the result's arrays exceed "
                                      f"{_MAX_READ_BYTES // 2**30} GiB; the file is damaged")
            arrays[name] = obj[()]
            if not isinstance(arrays[name], np.ndarray):  # a scalar dataset
                arrays[name] = np.asarray(arrays[name])
    return arrays, attrs


def _read_attrs(group: h5py.Group, source: str) -> dict[str, object]:
    raw = dict(group.attrs)
    try:
        json_names = set(json.loads(_text(raw.pop(_JSON_LIST, "[]"))))
    except (TypeError, ValueError):
        raise InvalidInputError(f"{source}: /{GROUP}@{_JSON_LIST} is damaged") from None
    attrs = {}
    for name, value in raw.items():
        if name in json_names:
            try:
                attrs[name] = json.loads(_text(value))
            except (TypeError, ValueError):
                raise InvalidInputError(f"{source}: attribute {name!r} is not valid JSON") \
                    from None
        else:
            attrs[name] = _python(value)
    return attrs


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _python(value):
    """An attribute read by h5py as a plain Python value where it is a scalar."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value
