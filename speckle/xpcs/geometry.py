"""Scattering geometry of a flat detector: momentum transfer q and azimuth φ of every pixel.

Conventions (SI inside):

- The detector is flat and perpendicular to the direct beam, at ``distance`` metres from the
  sample. Pixel ``(row, col)`` is the centre of that pixel; the beam centre is given in the same
  0-based pixel coordinates and may be fractional or outside the detector.
- The in-plane offset of a pixel from the beam centre is
  ``dy = (row - row0) * pixel_size[0]`` and ``dx = (col - col0) * pixel_size[1]`` (metres),
  ``r = hypot(dx, dy)``.
- Scattering angle ``2θ = atan(r / distance)``; momentum transfer ``q = 4π/λ · sin(θ)`` in 1/m
  (exact, no small-angle approximation).
- Azimuth φ in degrees: 0° points along +column (to the right of the beam centre), angles grow
  counter-clockwise **as the image is displayed with row 0 at the top** (rows pointing down), so
  90° points towards row 0 (up on screen) and -90° towards larger rows. φ is in (-180°, 180°].
  This is the convention of pyXpcsViewer's q-map display.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError
from ..io.dataset import HC_EV_M, Metadata

__all__ = ["Geometry"]

# field -> (what a person calls it, the command-line option that supplies it)
_FIELDS = {
    "energy": ("photon energy (eV)", "--energy"),
    "distance": ("sample-detector distance (m)", "--distance"),
    "pixel_size": ("detector pixel size (m)", "--pixel-size"),
    "beam_center": ("beam centre (row, column in pixels)", "--beam-center"),
}


def _pair(value, name: str) -> tuple[float, float]:
    try:
        arr = np.broadcast_to(np.asarray(value, dtype=float), (2,))
    except (ValueError, TypeError):
        raise InvalidInputError(
            f"{name} must be one number or a (row, column) pair, got {value!r}") from None
    if not np.isfinite(arr).all():
        raise InvalidInputError(f"{name} must be finite, got {value!r}")
    return float(arr[0]), float(arr[1])


@dataclass(frozen=True)
class Geometry:
    """Where the detector is and what the beam is.

    Parameters
    ----------
    energy : float
        Photon energy, eV.
    distance : float
        Sample to detector distance, m.
    pixel_size : float or (float, float)
        Pixel pitch (row, column), m. One number means square pixels.
    beam_center : (float, float)
        Direct-beam position (row, column), pixels, 0-based; may be fractional or off the chip.

    Raises
    ------
    InvalidInputError
        For non-positive or non-finite values.
    """

    energy: float
    distance: float
    pixel_size: tuple[float, float]
    beam_center: tuple[float, float]

    def __post_init__(self):
        for name in ("energy", "distance"):
            value = getattr(self, name)
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise InvalidInputError(f"{_FIELDS[name][0]} must be a number, got {value!r}") \
                    from None
            if not math.isfinite(value) or value <= 0:
                raise InvalidInputError(
                    f"{_FIELDS[name][0]} must be positive, got {value}; check {_FIELDS[name][1]}")
            object.__setattr__(self, name, value)
        ps = _pair(self.pixel_size, "pixel size")
        if min(ps) <= 0:
            raise InvalidInputError(f"pixel size must be positive, got {ps}; check --pixel-size")
        object.__setattr__(self, "pixel_size", ps)
        object.__setattr__(self, "beam_center", _pair(self.beam_center, "beam centre"))

    @classmethod
    def from_metadata(cls, md: Metadata, **overrides) -> "Geometry":
        """Build the geometry from a dataset's metadata, with values given by the user winning.

        Parameters
        ----------
        md : Metadata
            Metadata read from the file (fields may be None).
        **overrides
            ``energy`` (eV), ``distance`` (m), ``pixel_size`` (m, one number or (row, col)),
            ``beam_center`` (row, col pixels). None values are ignored.

        Returns
        -------
        Geometry

        Raises
        ------
        InvalidInputError
            When a field is missing from both the file and the overrides (the message names the
            command-line option that supplies it), or a value is not physical.
        """
        unknown = sorted(set(overrides) - set(_FIELDS))
        if unknown:
            raise InvalidInputError(
                f"unknown geometry field(s) {unknown}; known: {sorted(_FIELDS)}")
        values = {}
        missing = []
        for name in _FIELDS:
            value = overrides.get(name)
            if value is None:
                value = getattr(md, name, None) if md is not None else None
            if value is None:
                missing.append(name)
            values[name] = value
        if missing:
            raise InvalidInputError("; ".join(
                f"the {_FIELDS[n][0]} is not in the file: give it with {_FIELDS[n][1]}"
                for n in missing))
        return cls(**values)

    @property
    def wavelength(self) -> float:
        """Wavelength, m."""
        return HC_EV_M / self.energy

    def _offsets(self, shape) -> tuple[np.ndarray, np.ndarray]:
        """Physical offsets (dy, dx) in metres of every pixel centre from the beam centre."""
        try:
            rows, cols = (int(v) for v in shape)
        except (TypeError, ValueError):
            raise InvalidInputError(f"detector shape must be (rows, cols), got {shape!r}") \
                from None
        if rows < 1 or cols < 1:
            raise InvalidInputError(f"detector shape must be positive, got {shape!r}")
        dy = (np.arange(rows, dtype=np.float64) - self.beam_center[0]) * self.pixel_size[0]
        dx = (np.arange(cols, dtype=np.float64) - self.beam_center[1]) * self.pixel_size[1]
        return dy[:, None], dx[None, :]

    def two_theta_map(self, shape) -> np.ndarray:
        """Scattering angle 2θ of every pixel, radians, (rows, cols)."""
        dy, dx = self._offsets(shape)
        return np.arctan2(np.hypot(dy, dx), self.distance)

    def q_map(self, shape) -> np.ndarray:
        """Momentum transfer of every pixel, 1/m.

        Parameters
        ----------
        shape : (rows, cols)
            Detector shape.

        Returns
        -------
        ndarray of float64, (rows, cols)
            ``q = 4π/λ · sin(θ)`` with ``2θ = atan(r / distance)`` (exact).
        """
        return (4 * np.pi / self.wavelength) * np.sin(0.5 * self.two_theta_map(shape))

    def phi_map(self, shape) -> np.ndarray:
        """Azimuth of every pixel, degrees in (-180, 180].

        0° points along +column; angles grow counter-clockwise as the image is displayed with
        row 0 at the top (90° points towards row 0). The beam-centre pixel itself gets 0°.

        Parameters
        ----------
        shape : (rows, cols)
            Detector shape.

        Returns
        -------
        ndarray of float64, (rows, cols)
        """
        dy, dx = self._offsets(shape)
        dy, dx = np.broadcast_arrays(dy, dx)
        return np.degrees(np.arctan2(-dy, dx))

    def q_to_radius(self, q) -> np.ndarray:
        """Distance (m) from the beam centre to where momentum transfer ``q`` (1/m) lands."""
        theta = np.arcsin(np.clip(np.asarray(q, float) * self.wavelength / (4 * np.pi), -1, 1))
        return self.distance * np.tan(2 * theta)
