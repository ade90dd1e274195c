"""Imaging: Fourier transform holography, refocusing, CDI phase retrieval and conditioning.

The workflow (:mod:`~speckle.imaging.workflow`) is the one way in: options in, a result with a
verdict out, the same for the command line, the dashboards, the notebooks and the monitor::

    from speckle.imaging import CdiOptions, run_cdi
    result = run_cdi("pattern.h5", CdiOptions(background="p1"), mask=mask)
    result.verdict.summary

- :func:`run_fth`, :func:`run_cdi`, :func:`run_refocus` with :class:`FthOptions`,
  :class:`CdiOptions`, :class:`RefocusOptions`; :func:`find_cross_terms` tells a hologram
  (or a sample with reference apertures) from a plain diffraction pattern.
- Results are written and read by :mod:`speckle.io.imaging_result`.

The building blocks (numpy or cupy, chosen by the input array; see :mod:`speckle.backend`):

- :mod:`~speckle.imaging.propagation`: angular-spectrum and Fresnel propagation (conventions
  locked by tests).
- :mod:`~speckle.imaging.fth`: hologram centre, inversion, helicity difference, cross-terms.
- :mod:`~speckle.imaging.focus`: sharpness metrics, the fast focus sweep, autofocus.
- :mod:`~speckle.imaging.display`: complex images as colour (magnitude brightness, phase hue).
- :mod:`~speckle.imaging.center`: the one centre finder (patterns and holograms).
- :mod:`~speckle.imaging.prepare`: a pattern made ready for phasing (mask, background, centre,
  binning, shadows: :mod:`~speckle.imaging.shadows`).
- :mod:`~speckle.imaging.floor`: the speckle grain and the smooth background under it that
  phasing need not fit.
- :mod:`~speckle.imaging.beamstop`: the intensity behind a beamstop, from the compactness of
  the autocorrelation (before cross-terms are looked for).
- :mod:`~speckle.imaging.support`, :mod:`~speckle.imaging.phasing`,
  :mod:`~speckle.imaging.align`, :mod:`~speckle.imaging.resolution`: CDI phase retrieval
  (automatic and holographic supports, ER/HIO/RAAR/DM schedules, shrink-wrap, trial
  alignment, PRTF/FRC).
- :mod:`~speckle.imaging.verdict`: the imaging verdict's rules.
- :mod:`~speckle.imaging.conditioning`: dark, hot pixels, dust, merged exposures, centring,
  binning.
- :mod:`~speckle.imaging.simulate`: simulated objects, patterns and holograms with a known answer.

Images are centred: the zero of a pattern or reconstruction is at ``(rows // 2, cols // 2)``.
"""

from .options import CdiOptions, FthOptions, RefocusOptions
from .results import CdiResult, FthResult, RefocusResult
from .verdict import ImagingVerdict
from .workflow import find_cross_terms, run_cdi, run_fth, run_refocus

__all__ = ["CdiOptions", "CdiResult", "FthOptions", "FthResult", "ImagingVerdict",
           "RefocusOptions", "RefocusResult", "find_cross_terms", "run_cdi", "run_fth",
           "run_refocus"]
