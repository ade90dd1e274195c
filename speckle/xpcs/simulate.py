"""Simulated XPCS speckle with known correlation time and contrast.

The field in each pixel is a complex Gaussian Ornstein-Uhlenbeck process, so its normalised
field correlation is exactly ``g1(t) = exp(-t / tau)``. The intensity mixes the speckle with a
flat part so that the contrast is exactly ``beta``::

    I = m * (sqrt(beta) * |E|^2 + 1 - sqrt(beta)),   <|E|^2> = 1

which gives ``g2(t) = 1 + beta * exp(-2 t / tau)`` for the intensity, and, after Poisson
sampling of the counts, the same g2 at every lag t >= 1 frame. ``tau`` may vary per pixel (for
example ``1 / (D q^2)`` for diffusion).
"""

from __future__ import annotations

import numpy as np

from ..io.dataset import ArrayDataset, Metadata

__all__ = ["ou_speckle", "ou_speckle_chunks"]


def ou_speckle_chunks(n_frames, shape, tau_frames, beta=0.2, mean_counts=1.0, *, seed=0,
                      chunk_frames=256, dtype=np.uint16, poisson=True):
    """Yield simulated frames chunk by chunk (memory bounded by one chunk).

    Parameters
    ----------
    n_frames : int
        Number of frames.
    shape : (rows, cols)
        Frame shape.
    tau_frames : float or ndarray
        Field correlation time in frames, scalar or one value per pixel.
    beta : float
        Speckle contrast, 0 < beta <= 1.
    mean_counts : float or ndarray
        Mean counts per pixel per frame, scalar or per pixel.
    seed : int
        Seed of the random generator (results are reproducible).
    chunk_frames : int
        Frames per yielded chunk.
    dtype : dtype
        Output dtype (counts are clipped to its range when integer).
    poisson : bool
        Poisson-sample the intensities (photon counting); False yields the float intensities.

    Yields
    ------
    ndarray
        (chunk, rows, cols) frames.
    """
    if not 0 < beta <= 1:
        raise ValueError("beta must be in (0, 1]")
    rng = np.random.default_rng(seed)
    a = np.exp(-1.0 / np.broadcast_to(np.asarray(tau_frames, np.float64), shape)).astype(np.float32)
    b = np.sqrt(1 - a.astype(np.float64) ** 2).astype(np.float32)
    m = np.broadcast_to(np.asarray(mean_counts, np.float32), shape)
    sb = np.float32(np.sqrt(beta))
    scale = np.float32(np.sqrt(0.5))

    def noise():
        re = rng.standard_normal(shape, dtype=np.float32)
        im = rng.standard_normal(shape, dtype=np.float32)
        return re * scale, im * scale

    er, ei = noise()
    done = 0
    while done < n_frames:
        n = min(chunk_frames, n_frames - done)
        out = np.empty((n, *shape), np.float32)
        for k in range(n):
            if done + k > 0:
                nr, ni = noise()
                er = a * er + b * nr
                ei = a * ei + b * ni
            out[k] = m * (sb * (er * er + ei * ei) + (1 - sb))
        if poisson:
            out = rng.poisson(out)
        if np.issubdtype(np.dtype(dtype), np.integer):
            info = np.iinfo(dtype)
            out = np.clip(out, info.min, info.max)
        yield out.astype(dtype, copy=False)
        done += n


def ou_speckle(n_frames, shape, tau_frames, beta=0.2, mean_counts=1.0, *, seed=0,
               frame_time=1e-3, dtype=np.uint16, poisson=True):
    """Return simulated speckle as an in-memory dataset (see :func:`ou_speckle_chunks`).

    Returns
    -------
    ArrayDataset
        With ``metadata.frame_time = frame_time`` (seconds).
    """
    frames = np.concatenate(list(ou_speckle_chunks(
        n_frames, shape, tau_frames, beta, mean_counts, seed=seed, dtype=dtype,
        poisson=poisson)))
    return ArrayDataset(frames, Metadata(frame_time=frame_time),
                        source=f"simulated OU speckle tau={tau_frames} beta={beta}")
