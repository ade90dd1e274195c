"""Align reconstructions: sub-pixel shift, twin (conjugate point inversion), global phase.

A phase-retrieval solution is defined up to a translation, a global phase and its *twin*
``conj(o(-r))``, which has the same Fourier modulus. Two reconstructions are compared (or
averaged) after removing all three. Arrays may be numpy or cupy; images are centred, so the
point inversion is about ``(rows // 2, cols // 2)``.

The shift comes from the peak of the cross-correlation, refined to ``1 / upsample`` pixel by a
matrix-multiply DFT around the peak (Guizar-Sicairos, Thurman & Fienup, Opt. Lett. 33, 156,
2008) and applied exactly as a Fourier phase ramp (reconstructions are band-limited).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..backend import array_module
from ..errors import InvalidInputError
from .support import fft_module

__all__ = ["Alignment", "align_mask", "align_to", "apply_alignment", "find_alignment",
           "normalized_error", "twin"]


@dataclass(frozen=True)
class Alignment:
    """How to map an object onto a reference: ``phase · shift(twin?(obj), shift)``.

    Attributes
    ----------
    shift : (float, float)
        (row, col) pixels to move the (possibly twinned) object by.
    twin : bool
        Whether the object is replaced by its twin first.
    phase : float
        Global phase (radians) multiplied in last.
    """

    shift: tuple[float, float]
    twin: bool
    phase: float


def _complex(a, xp):
    a = xp.asarray(a)
    return a if a.dtype.kind == "c" else a.astype(xp.complex128)


def _invert(a, xp):
    """``a(2c − r)``: point inversion about the centre c = (rows // 2, cols // 2)."""
    # a[::-1] maps index i to n-1-i; inversion about c = n//2 maps i to 2c-i = (n-1-i) + d
    shift = tuple(2 * (n // 2) - n + 1 for n in a.shape)
    return xp.roll(a[::-1, ::-1], shift, axis=(0, 1))


def twin(obj):
    """The twin image ``conj(obj(2c − r))``: conjugate and invert about the centre c."""
    xp = array_module(obj)
    return xp.conj(_invert(xp.asarray(obj), xp))


def _small_matmul(a, b, xp):
    """``a @ b`` for a short ``a`` (few rows), by chunked broadcasting instead of BLAS.

    A threaded BLAS call this small is dominated by waking its threads, which on a busy
    machine costs tens of milliseconds; a plain elementwise loop over chunks takes < 1 ms at
    256² and about 60 ms at 1024².
    """
    chunk = max(1, (1 << 20) // max(1, a.shape[0] * b.shape[1]))
    out = xp.zeros((a.shape[0], b.shape[1]), dtype=xp.result_type(a, b))
    for j in range(0, b.shape[0], chunk):
        out += (a[:, j:j + chunk, None] * b[None, j:j + chunk, :]).sum(axis=1)
    return out


def _upsampled_dft(data, size: int, factor: int, offsets, xp):
    """The inverse DFT of ``data`` on a size×size grid of step 1/factor starting at -offsets."""
    def kernel(n, off):
        return xp.exp(-2j * np.pi * (xp.arange(size) - off)[:, None]
                      * xp.fft.fftfreq(n, factor)[None, :]).astype(data.dtype)

    rows = _small_matmul(kernel(data.shape[0], offsets[0]), data, xp)  # (size, cols)
    return _small_matmul(kernel(data.shape[1], offsets[1]), rows.T, xp).T


def _peak_shift(ref_f, obj_f, upsample: int, xp):
    """Sub-pixel shift moving obj onto ref, and the cross-correlation peak height."""
    product = ref_f * xp.conj(obj_f)
    cc = fft_module(xp).ifft2(product)
    mag = xp.abs(cc)
    flat = int(xp.argmax(mag))
    height = float(mag.ravel()[flat])
    shape = np.array(cc.shape)
    peak = np.array(np.unravel_index(flat, cc.shape), dtype=float)
    peak[peak > shape // 2] -= shape[peak > shape // 2]
    if upsample > 1:
        peak = np.round(peak * upsample) / upsample
        size = int(math.ceil(upsample * 1.5))
        centre = float(size // 2)
        up = xp.conj(_upsampled_dft(xp.conj(product), size, upsample,
                                    centre - peak * upsample, xp))
        sub = np.array(np.unravel_index(int(xp.argmax(xp.abs(up))), up.shape), dtype=float)
        peak = peak + (sub - centre) / upsample
    return (float(peak[0]), float(peak[1])), height


def _shift(obj, shift, xp):
    """Move ``obj`` by ``shift`` pixels (row, col) with a Fourier phase ramp."""
    ramp_y = xp.exp(-2j * np.pi * xp.fft.fftfreq(obj.shape[0]) * shift[0]).astype(obj.dtype)
    ramp_x = xp.exp(-2j * np.pi * xp.fft.fftfreq(obj.shape[1]) * shift[1]).astype(obj.dtype)
    ramp = ramp_y[:, None] * ramp_x[None, :]
    fft = fft_module(xp)
    return fft.ifft2(fft.fft2(obj) * ramp)


def _check_pair(reference, obj):
    xp = array_module(reference, obj)
    ref, ob = _complex(reference, xp), _complex(obj, xp)
    if ref.ndim != 2 or ref.shape != ob.shape:
        raise InvalidInputError(f"alignment needs two 2D images of one shape, got "
                                f"{tuple(ref.shape)} and {tuple(ob.shape)}")
    return xp, ref, ob


def find_alignment(reference, obj, *, upsample: int = 20, allow_twin: bool = True) -> Alignment:
    """Find the shift, twin choice and global phase that best map ``obj`` onto ``reference``.

    Parameters
    ----------
    reference, obj : array, (rows, cols)
        Complex (or real) images, numpy or cupy.
    upsample : int
        Shift precision is ``1 / upsample`` pixel.
    allow_twin : bool
        Also try the twin of ``obj`` and keep whichever correlates better.

    Returns
    -------
    Alignment
    """
    xp, ref, ob = _check_pair(reference, obj)
    fft = fft_module(xp)
    ref_f = fft.fft2(ref)
    best = None
    for is_twin in (False, True) if allow_twin else (False,):
        cand = twin(ob) if is_twin else ob
        shift, height = _peak_shift(ref_f, fft.fft2(cand), max(1, int(upsample)), xp)
        if best is None or height > best[2]:
            best = (shift, is_twin, height, cand)
    shift, is_twin, _, cand = best
    moved = _shift(cand, shift, xp)
    phase = float(np.angle(complex(xp.vdot(moved, ref))))
    return Alignment(shift=shift, twin=is_twin, phase=phase)


def apply_alignment(obj, alignment: Alignment):
    """Apply an :class:`Alignment` to ``obj`` (twin, then shift, then global phase)."""
    xp = array_module(obj)
    a = _complex(obj, xp)
    if alignment.twin:
        a = twin(a)
    if alignment.shift != (0.0, 0.0):
        a = _shift(a, alignment.shift, xp)
    if alignment.phase == 0:
        return a.copy() if a is obj else a
    return a * a.dtype.type(np.exp(1j * alignment.phase))


def align_mask(mask, alignment: Alignment):
    """Move a boolean mask (a support) as :func:`apply_alignment` moves its object.

    Inverted for a twin, shifted by the alignment's shift rounded to whole pixels (circularly);
    the phase does not apply.
    """
    xp = array_module(mask)
    m = xp.asarray(mask, dtype=bool)
    if alignment.twin:
        m = _invert(m, xp)
    return xp.roll(m, tuple(int(round(s)) for s in alignment.shift), axis=(0, 1))


def align_to(reference, obj, *, upsample: int = 20, allow_twin: bool = True):
    """``obj`` moved, twinned if that fits better, and phase-rotated onto ``reference``.

    The magnitude is not rescaled. See :func:`find_alignment` for the parameters.

    Returns
    -------
    complex ndarray
        Same module as ``obj``.
    """
    return apply_alignment(obj, find_alignment(reference, obj, upsample=upsample,
                                               allow_twin=allow_twin))


def normalized_error(reference, obj, *, upsample: int = 20, allow_twin: bool = True) -> float:
    """Relative error of ``obj`` against ``reference`` after alignment.

    ``min_c ‖reference − c · aligned(obj)‖ / ‖reference‖`` over complex factors c (global phase
    and scale), with ``aligned`` from :func:`align_to`.

    Returns
    -------
    float
        0 for a perfect match, 1 for an unrelated (orthogonal) image.
    """
    xp, ref, _ = _check_pair(reference, obj)
    ref = ref.astype(xp.complex128)
    moved = align_to(ref, obj, upsample=upsample, allow_twin=allow_twin).astype(xp.complex128)
    ref_norm2 = float(xp.vdot(ref, ref).real)
    if ref_norm2 == 0:
        raise InvalidInputError("the reference image is zero: the error is undefined")
    obj_norm2 = float(xp.vdot(moved, moved).real)
    if obj_norm2 == 0:
        return 1.0
    overlap = complex(xp.vdot(moved, ref))
    residual2 = max(ref_norm2 - abs(overlap) ** 2 / obj_norm2, 0.0)
    return math.sqrt(residual2 / ref_norm2)
