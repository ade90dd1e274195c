"""speckle: coherent X-ray scattering analysis (XPCS, FTH, CDI) on numpy or cupy.

The library is importable without Jupyter. Sub-packages:

- :mod:`speckle.backend` chooses numpy or cupy (the only place that imports cupy).
- :mod:`speckle.io` opens datasets by content, validates them and writes results.
- :mod:`speckle.xpcs` partitions, correlators, fits and the quality verdict.
"""

__version__ = "0.1.0"
