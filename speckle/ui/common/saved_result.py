"""Saved imaging results opened as data: a ``result.h5`` of FTH, CDI or a refocus sweep.

The imaging dashboards write their results with :func:`speckle.io.images.write_image_result`
(``/speckle/<array>``, ``/speckle@kind`` = "fth", "cdi" or "propagation"). Chosen again in the
data chooser, such a file is read with :func:`speckle.io.images.read_image_result` and offered
as a one-frame :class:`SavedResult` dataset whose frame is the result's main image (complex for
a reconstruction), with the arrays and attributes beside it: the propagation dashboard refocuses
it again, the CDI dashboard shows its reconstruction for refocusing.
"""

from __future__ import annotations

import numpy as np

from ...errors import InvalidInputError
from ...io.dataset import Dataset, Metadata
from ...io.images import read_image_result

__all__ = ["IMAGE_NAMES", "SavedResult"]

#: The arrays that make a result's main image, in order of preference: the whole reconstruction
#: (FTH, CDI, their refocus sweeps), the whole field (propagation), the refocused region.
IMAGE_NAMES = ("reconstruction", "image", "focused", "field")


def _image_name(arrays: dict) -> str | None:
    images = [n for n, a in arrays.items() if a.ndim == 2 and min(a.shape) >= 2]
    for name in IMAGE_NAMES:
        if name in images:
            return name
    complex_images = [n for n in images if np.iscomplexobj(arrays[n])]
    return (complex_images or images or [None])[0]


def _positive(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


class SavedResult(Dataset):
    """A saved imaging result as a one-frame dataset of its main image.

    Parameters
    ----------
    path : path-like
        A file written by :func:`speckle.io.images.write_image_result`.

    Attributes
    ----------
    arrays : dict of str to numpy.ndarray
        Every array of the result.
    attrs : dict
        Its attributes (``"kind"``, ``"region"``, ``"energy_ev"``, ``"pixel_size_m"``...).
    kind : str
        "fth", "cdi" or "propagation".
    name : str
        Which array is the image (the first of :data:`IMAGE_NAMES` present, else the first 2D
        complex array, else the first 2D array).
    image : numpy.ndarray
        That array (complex for a reconstruction or a field).
    pitch : float or None
        The image's pixel size in the sample plane, m, when the result says.
    region : (row0, row1, col0, col1) or None
        The region the result was made of, when it says and it fits the image.

    Raises
    ------
    InvalidInputError
        When the file is not such a result or holds no 2D image.
    """

    format = "speckle result"

    def __init__(self, path):
        self.arrays, self.attrs = read_image_result(path)
        self.kind = str(self.attrs.get("kind", ""))
        self.source = str(path)
        name = _image_name(self.arrays)
        if name is None:
            raise InvalidInputError(f"{path}: this saved {self.kind} result holds no 2D image "
                                    "to show; choose another result.h5")
        self.name = name
        self.image = self.arrays[name]
        self.shape = (1, *self.image.shape)
        self.dtype = self.image.dtype
        energy = _positive(self.attrs.get("energy_ev"))
        self.metadata = Metadata().updated(energy=energy)
        self.pitch = _positive(self.attrs.get("pixel_size_m"))
        region = self.attrs.get("region")
        rows, cols = self.image.shape
        self.region = None
        if name != "focused" and name != "field" and isinstance(region, list) and \
                len(region) == 4 and all(isinstance(v, int) for v in region):
            r0, r1, c0, c1 = region
            if 0 <= r0 < r1 <= rows and 0 <= c0 < c1 <= cols:
                self.region = (r0, r1, c0, c1)

    def _read(self, start: int, stop: int) -> np.ndarray:
        return self.image[None][start:stop]
