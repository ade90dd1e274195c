"""Rectangular regions of an image, in plain Python: what every region editor edits.

A region is ``(row0, row1, col0, col1)``: half-open pixel ranges, 0-based, as numpy slices
``image[row0:row1, col0:col1]``. :class:`RegionList` holds the regions of one image, checks
each against the image's shape (with a message saying what to do), keeps at most
``max_regions`` and calls back on every change. It knows nothing of widgets; the editor on
screen (:class:`~speckle.ui.common.region_editor.RegionEditor`) is a layer over it, used by the
XPCS image (where the regions become the ROIs of an XPCS partition) and by the imaging views.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from ...errors import InvalidInputError
from ...xpcs.partitions import parse_roi

__all__ = ["Region", "RegionList", "describe_region", "parse_regions", "region_from_extents"]

Region = tuple[int, int, int, int]


def parse_regions(text: str) -> list[Region]:
    """Read regions typed as ``"ROW0:ROW1,COL0:COL1; ROW0:ROW1,COL0:COL1; ..."``.

    Parameters
    ----------
    text : str
        One region, or several separated by ``;``; empty parts are skipped.

    Returns
    -------
    list of (row0, row1, col0, col1)

    Raises
    ------
    InvalidInputError
        For a part that is not ``ROW0:ROW1,COL0:COL1`` (the message names it).
    """
    return [parse_roi(part.strip()) for part in text.split(";") if part.strip()]


def describe_region(region: Region) -> str:
    """``"rows 10:20, cols 30:50 (10×20 px)"``: a region in words."""
    r0, r1, c0, c1 = region
    return f"rows {r0}:{r1}, cols {c0}:{c1} ({r1 - r0}×{c1 - c0} px)"


def region_from_extents(x0, x1, y0, y1, shape) -> Region | None:
    """Pixels covered by a rectangle drawn in image coordinates (pixel centres at integers).

    Parameters
    ----------
    x0, x1, y0, y1 : float
        Column and row extents as drawn (any order).
    shape : (rows, cols)

    Returns
    -------
    (row0, row1, col0, col1) or None
        Half-open pixel ranges clipped to the image; None when nothing is left.
    """
    x0, x1 = sorted((float(x0), float(x1)))
    y0, y1 = sorted((float(y0), float(y1)))
    r0 = max(0, math.floor(y0 + 0.5))
    r1 = min(int(shape[0]), math.floor(y1 + 0.5) + 1)
    c0 = max(0, math.floor(x0 + 0.5))
    c1 = min(int(shape[1]), math.floor(x1 + 0.5) + 1)
    if r1 <= r0 or c1 <= c0:
        return None
    return (r0, r1, c0, c1)


class RegionList:
    """The rectangular regions of one image, checked against its shape.

    Parameters
    ----------
    max_regions : int or None
        How many regions are kept: a new one beyond it replaces the oldest (1: the region is
        replaced each time); None for any number; 0 for none (every region is refused).
    shape : (rows, cols), optional
        The image's shape; without one, regions are refused until :meth:`set_shape`.

    Attributes
    ----------
    max_regions : int or None
    shape : (rows, cols) or None
    """

    def __init__(self, max_regions: int | None = None, shape=None):
        self.max_regions = max_regions
        self.shape = None if shape is None else (int(shape[0]), int(shape[1]))
        self._regions: list[Region] = []
        self._callbacks: list[Callable[[], None]] = []

    @property
    def regions(self) -> list[Region]:
        """The regions, in the order given (a copy)."""
        return list(self._regions)

    @property
    def last(self) -> Region | None:
        """The region given last, or None."""
        return self._regions[-1] if self._regions else None

    def __len__(self) -> int:
        return len(self._regions)

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every change of the regions."""
        self._callbacks.append(callback)

    def _changed(self) -> None:
        for callback in list(self._callbacks):
            callback()

    def check(self, r0: int, r1: int, c0: int, c1: int) -> Region:
        """The region as integers, if it may be added.

        Raises
        ------
        InvalidInputError
            With what to do: no image yet, no regions allowed, empty or outside the image.
        """
        if self.max_regions == 0:
            raise InvalidInputError("this image takes no regions")
        if self.shape is None:
            raise InvalidInputError("Choose data first: there is no image to draw a region on.")
        r0, r1, c0, c1 = (int(v) for v in (r0, r1, c0, c1))
        rows, cols = self.shape
        if not (0 <= r0 < r1 <= rows and 0 <= c0 < c1 <= cols):
            raise InvalidInputError(f"The region rows {r0}:{r1}, cols {c0}:{c1} is empty or "
                                    f"outside the {rows}×{cols} image; give ranges inside it.")
        return (r0, r1, c0, c1)

    def add(self, r0: int, r1: int, c0: int, c1: int) -> Region:
        """Add a region (see :meth:`check`); the oldest goes beyond ``max_regions``.

        Raises
        ------
        InvalidInputError
            As :meth:`check`; nothing changes then.
        """
        region = self.check(r0, r1, c0, c1)
        if self.max_regions is not None and len(self._regions) >= self.max_regions:
            del self._regions[: len(self._regions) - self.max_regions + 1]
        self._regions.append(region)
        self._changed()
        return region

    def add_text(self, text: str) -> list[Region]:
        """Add the regions typed in ``text`` (see :func:`parse_regions`): all or none.

        Raises
        ------
        InvalidInputError
            For text that cannot be read or a region that may not be added.
        """
        regions = [self.check(*r) for r in parse_regions(text)]
        for region in regions:
            self.add(*region)
        return regions

    def replace(self, regions: Iterable) -> None:
        """Make ``regions`` the regions (each checked; none changes on a refusal).

        Raises
        ------
        InvalidInputError
            As :meth:`check`.
        """
        checked = [self.check(*r) for r in regions]
        if self.max_regions is not None:
            checked = checked[len(checked) - self.max_regions:] if self.max_regions else []
        if checked != self._regions:
            self._regions = checked
            self._changed()

    def remove(self, index: int | None) -> None:
        """Remove the region at ``index`` (0-based); nothing for None or out of range."""
        if index is None or not 0 <= index < len(self._regions):
            return
        del self._regions[index]
        self._changed()

    def clear(self) -> None:
        """Remove every region."""
        if self._regions:
            self._regions = []
            self._changed()

    def set_shape(self, shape) -> None:
        """A new image: its shape; the regions are dropped when the shape differs."""
        shape = None if shape is None else (int(shape[0]), int(shape[1]))
        if shape != self.shape:
            self.shape = shape
            self.clear()
