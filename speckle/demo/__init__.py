"""Demonstration datasets shipped inside the package (provenance in PROVENANCE.md)."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent

#: Planck constant times speed of light, in eV·m (CODATA 2018).
HC_EV_M = 1.239841984e-6

#: name -> (file, metadata overrides from the dataset's published geometry)
DEMOS = {
    "xpcs": (
        "xpcs_img_stack5301_5401.npy.zip",
        {
            "frame_time": 1.30068e-3,
            "energy": HC_EV_M / 1.546e-10,  # published wavelength 1.546 Å
            "distance": 2.230,
            "pixel_size": (108e-6, 108e-6),
            # Fitted from the speckle rings of the data themselves: the published centre
            # (143, 123) puts the published rings (8-16 pixels out) on the beamstop.
            "beam_center": (133.0, 143.0),
        },
    ),
    # The original ALS 12.0.2 speckle analysis server's imaging demos: 512 × 512 float64 FITS
    # with no acquisition metadata (energy, distance and pixel size are typed in the dashboards).
    "fth": ("fth.fits", {}),
    "cdi": ("cdi.fits", {}),
}

#: q-rings that sample the speckle of each demo (q in 1/Å, as a user would type them).
DEMO_RINGS = {
    "xpcs": {"n_rings": 8, "q_min": 0.006, "q_width": 0.003, "static_per_ring": 6},
}


def demo_path(name: str = "xpcs") -> Path:
    """Return the path of a bundled demo dataset.

    Parameters
    ----------
    name : str
        One of ``speckle.demo.DEMOS``.

    Returns
    -------
    pathlib.Path
    """
    if name not in DEMOS:
        raise KeyError(f"unknown demo {name!r}; choose one of {sorted(DEMOS)}")
    return _HERE / DEMOS[name][0]


def demo_metadata(name: str = "xpcs") -> dict:
    """Return the published acquisition geometry of a demo dataset (SI units)."""
    return dict(DEMOS[name][1])
