"""What a dataset is, from its content: an XPCS series, an FTH hologram or a CDI pattern.

- **XPCS**: a series of at least :data:`MIN_SERIES_FRAMES` frames (a correlation needs many).
- A single image (or a few frames, averaged) is a far-field pattern. Its inverse Fourier
  transform is the sample's autocorrelation; with reference apertures beside the object
  (**FTH**), object-reference cross-terms stand apart from the central autocorrelation. Without
  them it is a **CDI** pattern, for phase retrieval.

A folder's template can fix the kind (``kind: cdi``) where the content would mislead, e.g. a CDI
sample that also carries references.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MIN_SERIES_FRAMES", "image_of", "recognise"]

#: Fewest frames recognised as an XPCS series.
MIN_SERIES_FRAMES = 20


def image_of(ds) -> np.ndarray:
    """The dataset as one image: its frame, or the mean of its (few) frames, as float64.

    Pixels that are not finite in any frame stay NaN: unmeasured (dead pixels, gaps written as
    NaN), which the imaging workflow leaves free.
    """
    frames = np.asarray(ds.read_frames(0, ds.n_frames), dtype=np.float64)
    return frames.mean(axis=0)


def recognise(ds) -> tuple[str, str]:
    """The kind of an open dataset and why.

    Parameters
    ----------
    ds : Dataset

    Returns
    -------
    (kind, reason) : (str, str)
        ``kind`` is ``"xpcs"``, ``"fth"`` or ``"cdi"``; ``reason`` says why in a few words.
    """
    n = ds.n_frames
    if n >= MIN_SERIES_FRAMES:
        return "xpcs", f"a series of {n} frames"
    from ..imaging.workflow import find_cross_terms

    image = image_of(ds)
    terms = find_cross_terms(image, mask=~np.isfinite(image))
    what = f"{'one image' if n == 1 else f'{n} frames'}"
    if terms:
        return "fth", f"{what} whose autocorrelation has {len(terms)} cross-terms (references)"
    return "cdi", f"{what} without reference cross-terms"
