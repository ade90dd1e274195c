"""Open any supported dataset by its content: the one entry point of the readers."""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import InvalidInputError
from .dataset import Dataset
from .sniff import sniff_format

__all__ = ["open_dataset"]

#: The reader of each format (module, function), imported when a file of it is opened: the
#: libraries behind them take 30-40 ms each to import (tifffile, hdf5plugin, astropy).
_READERS = {
    "hdf5": ("read_hdf5", "open_hdf5"),
    "tiff": ("read_tiff", "open_tiff"),
    "tiff-series": ("read_tiff", "open_tiff_series"),
    "fits": ("read_fits", "open_fits"),
    "npy": ("read_numpy", "open_npy"),
    "zip": ("read_numpy", "open_npz"),
}


def _reader(fmt: str):
    module, function = _READERS[fmt]
    return getattr(importlib.import_module(f"{__package__}.{module}"), function)


def open_dataset(path, *, dataset=None, metadata: dict | None = None,
                 max_bytes: int | None = None) -> Dataset:
    """Open a stack of detector frames, detecting the format from the file's content.

    The file's extension is ignored: an HDF5 file named ``.tif`` opens as HDF5. Frames are read
    lazily (see :meth:`Dataset.iter_chunks`); every reader validates the file first and refuses
    what it does not understand with a one-line message saying what to do.

    Parameters
    ----------
    path : str or os.PathLike
        A file (HDF5/NeXus, TIFF, FITS, ``.npy``, ``.npz`` or a ZIP of one ``.npy``), a
        directory of TIFF files, or a glob/numbered pattern of TIFF files
        (``scan/img_*.tif``, ``scan/img_%05d.tif``).
    dataset : str or int, optional
        Which array inside a container: an HDF5 path (default ``/entry/data/data``, then the
        NeXus default), an npz member name, or a FITS HDU index/EXTNAME.
    metadata : dict, optional
        Overrides of :class:`~speckle.io.dataset.Metadata` fields, e.g.
        ``{"frame_time": 1.3e-3, "distance": 2.23}`` (SI units); given values win over the
        file's, None values are ignored.
    max_bytes : int, optional
        Refuse data whose declared size is larger. Default: no limit beyond sanity for data read
        lazily from disk, 8 GiB for compressed ZIP members.

    Returns
    -------
    Dataset
        ``format`` is one of ``"hdf5"``, ``"tiff"``, ``"tiff-series"``, ``"fits"``, ``"npy"``,
        ``"npz"``. Close it (or use it in a ``with`` block) to release the file.

    Raises
    ------
    speckle.errors.DatasetNotFoundError
        When nothing exists at ``path`` (also a ``FileNotFoundError``).
    UnsupportedFormatError
        When the content is no supported format.
    UnsafeFileError
        When the file asks for something refused (external links or files, pickles, absurd
        sizes, zip bombs).
    InvalidInputError
        For damaged files, unusable data, bad ``metadata`` overrides.

    Examples
    --------
    >>> with open_dataset("scan.h5", metadata={"frame_time": 1e-3}) as ds:  # doctest: +SKIP
    ...     for first, frames in ds.iter_chunks():
    ...         ...
    """
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidInputError(f"metadata overrides must be a dict of field values, got "
                                f"{type(metadata).__name__}")
    path = Path(path).expanduser()
    ds = _reader(sniff_format(path))(path, dataset=dataset, max_bytes=max_bytes)
    if metadata:
        try:
            ds.metadata = ds.metadata.updated(**metadata)
        except BaseException:
            ds.close()
            raise
    return ds
