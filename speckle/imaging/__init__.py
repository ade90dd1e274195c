"""Imaging: Fourier transform holography, refocusing, CDI phase retrieval and conditioning.

Modules (numpy or cupy, chosen by the input array; see :mod:`speckle.backend`):

- :mod:`~speckle.imaging.propagation`: angular-spectrum and Fresnel propagation (conventions
  locked by tests).
- :mod:`~speckle.imaging.fth`: hologram centre, inversion, helicity difference, cross-terms.
- :mod:`~speckle.imaging.focus`: sharpness metrics, the fast focus sweep, autofocus.
- :mod:`~speckle.imaging.display`: complex images as colour (magnitude brightness, phase hue).
- :mod:`~speckle.imaging.support`, :mod:`~speckle.imaging.phasing`,
  :mod:`~speckle.imaging.align`, :mod:`~speckle.imaging.resolution`: CDI phase retrieval
  (ER/HIO/RAAR/DM schedules, shrink-wrap, trial alignment, PRTF/FRC).
- :mod:`~speckle.imaging.conditioning`: dark, hot pixels, dust, merged exposures, centring,
  binning.

Images are centred: the zero of a pattern or reconstruction is at ``(rows // 2, cols // 2)``.
Results are written with :func:`speckle.io.images.write_image_result`.
"""
