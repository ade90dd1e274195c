"""FITS images and cubes (astropy.io.fits, memory-mapped, read lazily).

The stack is the first HDU holding image data (a primary array, an IMAGE extension or a
tile-compressed image), or the HDU named by ``dataset`` (an index or an EXTNAME). A 2D image is
one frame; a 3D cube is (frames, rows, cols) in numpy order, i.e. NAXIS3 frames of NAXIS2 rows
of NAXIS1 columns. BZERO/BSCALE are applied by astropy (unsigned 16-bit data come back as
uint16).

Orientation
-----------
The array is used exactly as astropy returns it: row 0 is the *first row stored in the file*
(FITS pixel y = 1). FITS viewers (ds9) draw that row at the bottom, speckle's images draw row 0
at the top (matplotlib ``origin="upper"``), so a picture may look flipped against ds9, but no
pixel is moved. Evidence for keeping it: the original ALS 12.0.2 demo files ``fth.fits`` and
``cdi.fits`` carry only the five mandatory cards (SIMPLE, BITPIX, NAXIS, NAXIS1, NAXIS2, no WCS
or orientation keywords), and the old ALS server read them with astropy and used the array
as-is, so results on them stay comparable with that server. No header convention demands a
flip, so there is no ``flip_rows`` option.

Metadata: ``EXPTIME``, ``EXPOSURE`` or ``ITIME`` (seconds, the FITS convention) give
``count_time``; other non-structural header cards go to ``Metadata.extra``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..errors import InvalidInputError
from .dataset import Dataset, Metadata
from .limits import (check_declared_size, check_max_bytes, damaged, file_size, frame_dtype,
                     frame_layout, one_line)

__all__ = ["FitsDataset", "open_fits"]

_EXPOSURE_KEYS = ("EXPTIME", "EXPOSURE", "ITIME")
# Structural cards describe the layout, not the acquisition: they stay out of Metadata.extra.
_STRUCTURAL = {"SIMPLE", "BITPIX", "EXTEND", "BZERO", "BSCALE", "BLANK", "PCOUNT", "GCOUNT",
               "XTENSION", "END", "COMMENT", "HISTORY", "CHECKSUM", "DATASUM", "EXTNAME",
               "EXTVER", "", "ZIMAGE", "ZBITPIX", "ZCMPTYPE", "ZTILE1", "ZTILE2", "ZTILE3",
               "ZQUANTIZ", "ZDITHER0", "ZSIMPLE", "ZEXTEND", "ZPCOUNT", "ZGCOUNT", "ZTENSION"}
_MAX_EXTRA_CARDS = 64
_FITS_BLOCK = 2880


def open_fits(path, *, dataset=None, max_bytes: int | None = None) -> "FitsDataset":
    """Open a FITS image or cube as a stack of frames.

    Parameters
    ----------
    path : str or os.PathLike
        The FITS file.
    dataset : int or str, optional
        HDU index (``1`` or ``"1"``) or EXTNAME; default: the first HDU with image data.
    max_bytes : int, optional
        Refuse an image whose declared size is larger (default: no limit beyond sanity).

    Returns
    -------
    FitsDataset
        ``hdu_index`` says which HDU was read.

    Raises
    ------
    InvalidInputError
        For a damaged or truncated file, no image HDU, or data that are not real numbers.
    """
    return FitsDataset(path, dataset=dataset, max_bytes=max_bytes)


class FitsDataset(Dataset):
    """A lazily read FITS image or cube (see :func:`open_fits` and the module documentation).

    Attributes
    ----------
    hdu_index : int
        Index of the HDU read.
    """

    def __init__(self, path, *, dataset=None, max_bytes: int | None = None):
        self.source = str(path)
        self.format = "fits"
        max_bytes = check_max_bytes(max_bytes)
        from astropy.io import fits  # noqa: PLC0415 - astropy costs ~0.5 s; import when needed

        try:
            # astropy memory-maps by default; memmap=True would also forbid BZERO/BSCALE scaling.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # truncation warnings: checked and refused below
                self._hdul = fits.open(path, mode="readonly", lazy_load_hdus=True)
        except Exception as exc:  # astropy raises OSError, ValueError, TypeError when damaged
            raise damaged(path, exc, "FITS file") from None
        try:
            self.hdu_index, hdu = self._select(dataset)
            what = f"HDU {self.hdu_index}"
            self._layout = frame_layout(hdu.shape, self.source, what)
            self.shape = self._layout.shape
            self._check_complete(hdu)
            self._section = hdu.section
            probe = self._read_section((0,) * (len(hdu.shape) - 1) + (slice(0, 1),))
            self.dtype = frame_dtype(probe.dtype, self.source, what)
            check_declared_size(self.shape, self.dtype, self.source, max_bytes=max_bytes,
                                what=what)
            self.metadata = _header_metadata(hdu.header, self.hdu_index)
        except BaseException:
            self.close()
            raise

    def _select(self, dataset):
        """Return ``(index, hdu)`` of the requested or first image HDU."""
        def is_image(hdu):
            return hdu.is_image and hdu.header.get("NAXIS", 0) > 0 and len(hdu.shape) > 0

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                hdus = list(self._hdul)
        except Exception as exc:  # a damaged extension header raises various types
            raise damaged(self.source, exc, "FITS file") from None
        if dataset is None:
            for index, hdu in enumerate(hdus):
                if is_image(hdu):
                    return index, hdu
            raise InvalidInputError(f"{self.source}: the FITS file holds no image data "
                                    f"(HDUs: {_hdu_names(hdus)})")
        key = int(dataset) if str(dataset).strip().isdigit() else str(dataset)
        try:
            index = key if isinstance(key, int) else self._hdul.index_of(key)
            hdu = hdus[index]
        except (KeyError, IndexError):
            raise InvalidInputError(f"{self.source}: no HDU {dataset!r}; HDUs: "
                                    f"{_hdu_names(hdus)}") from None
        if not is_image(hdu):
            raise InvalidInputError(f"{self.source}: HDU {dataset!r} holds no image data; HDUs: "
                                    f"{_hdu_names(hdus)}")
        return index, hdu

    def _check_complete(self, hdu) -> None:
        """Refuse a file shorter than its header declares (a truncated copy)."""
        from astropy.io import fits  # noqa: PLC0415 - imported by __init__ already

        info = hdu.fileinfo()
        if isinstance(hdu, fits.CompImageHDU):
            # Only the padded span of the compressed table is known: its last block may be short.
            need = info["datLoc"] + info["datSpan"] - (_FITS_BLOCK - 1)
        else:
            need = info["datLoc"] + abs(hdu.header["BITPIX"]) // 8 * math.prod(hdu.shape)
        have = file_size(self.source)
        if have < need:
            raise damaged(self.source, f"HDU {self.hdu_index} needs {need} bytes, the file has "
                          f"{have}", "FITS file")

    def _read_section(self, key):
        try:
            return np.asarray(self._section[key])
        except Exception as exc:  # astropy raises TypeError, ValueError, OSError on short data
            raise damaged(self.source, exc, "FITS file") from None

    def _read(self, start: int, stop: int) -> np.ndarray:
        frames = self._read_section(self._layout.key(start, stop))
        return np.array(frames.reshape((stop - start, *self.frame_shape)), dtype=self.dtype)

    def close(self) -> None:
        """Close the file and its memory map (idempotent)."""
        hdul = getattr(self, "_hdul", None)
        if hdul is not None:
            hdul.close()
            self._hdul = None


def _hdu_names(hdus) -> str:
    return ", ".join(f"{i} {hdu.name + ' ' if hdu.name else ''}{type(hdu).__name__}"
                     + (f" {tuple(hdu.shape)}" if hdu.is_image else "")
                     for i, hdu in enumerate(hdus))


def _header_metadata(header, hdu_index: int) -> Metadata:
    """Exposure time and provenance cards of a FITS header."""
    extra = {"fits_hdu": hdu_index}
    count_time = None
    for card in header.cards:
        key = card.keyword
        if key in _STRUCTURAL or key.startswith("NAXIS") or len(extra) >= _MAX_EXTRA_CARDS:
            continue
        try:
            value = card.value
        except Exception:  # noqa: BLE001 - an unparsable card (astropy's VerifyError): metadata is optional
            continue
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (str, int, float)):
            value = str(value)
        extra[key] = one_line(value) if isinstance(value, str) else value
        if key in _EXPOSURE_KEYS and count_time is None:
            try:
                count_time = float(value)
            except ValueError:
                continue
    if count_time is not None and not (np.isfinite(count_time) and count_time > 0):
        count_time = None
    return Metadata(extra=extra).updated(count_time=count_time)
