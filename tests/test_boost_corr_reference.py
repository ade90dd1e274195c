"""Cross-check of speckle's multi-tau g2 against boost_corr 0.1.7 (APS), without torch.

``tests/data/boost_corr_reference.npz`` holds boost_corr's ``normalized_g2`` and
``normalized_g2_err`` for a seeded simulation (400 frames of 32 x 48 uint16 counts, 2 dynamic x 3
static rings, per-pixel correlation time and mean intensity varying inside each ring), the q-map
and the generator parameters; the frames are regenerated here from the seed (their SHA-256 is
checked). ``benchmarks/peers/make_boost_corr_reference.py`` regenerates the file.

What boost_corr 0.1.7 computes (read from its installed code, ``multitau.py`` and
``xpcs_qpartitionmap.py``; :func:`boost_model` below is a float64 transcription, checked against
the stored reference by :func:`test_reference_matches_float64_model`):

* lags ``1..8`` at level 0, then ``(5..8) * 2**l`` at level ``l`` while the lag is below
  ``(T // 2**l) * 2**l``;
* level ``l`` holds the series ``s_j`` of sums of ``2**l`` consecutive frames (``T_l = T // 2**l``
  entries, pairs from frame 0); for a lag of ``k`` entries and ``n = T_l - k``, per pixel
  ``G = sum_j s_j s_{j+k} / (n 4**l)``, ``IP = sum_{j>=k} s_j / (n 2**l)`` and
  ``IF = sum_{j<n} s_j / (n 2**l)`` (exact means over the pairs' members);
* per static bin ``g2_s = <G>_s / (<IP>_s <IF>_s)``; per dynamic bin the unweighted mean of its
  static bins; the error is ``std(G / (IP IF), ddof=1)`` over the bin's pixels divided by the
  square root of their number (pixels with ``IP IF == 0`` count as g2 = 0);
* its Python API does not divide frames by their mean (``normalize_frame=False``); it stores
  levels 0-4 in bfloat16 and rounds each level's sums to bfloat16, so its g2 differs from the
  float64 definition by up to about 3e-4 here (the error bars by up to 0.4 %).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

REFERENCE = Path(__file__).resolve().parent / "data" / "boost_corr_reference.npz"
RTOL_G2 = 1e-3       # speckle vs boost_corr, every lag both compute
RTOL_G2_ERR = 1e-2   # error bars (boost_corr's bfloat16 rounding moves them by up to 0.4 %)


@pytest.fixture(scope="module")
def ref():
    with np.load(REFERENCE) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def frames(ref):
    from speckle.xpcs.simulate import ou_speckle_chunks

    out = np.concatenate(list(ou_speckle_chunks(
        int(ref["n_frames"]), tuple(int(v) for v in ref["shape"]), ref["tau_frames_map"],
        float(ref["beta"]), ref["mean_counts_map"], seed=int(ref["seed"]),
        chunk_frames=int(ref["chunk_frames"]), dtype=np.dtype(str(ref["dtype"])))))
    digest = hashlib.sha256(np.ascontiguousarray(out).tobytes()).hexdigest()
    assert digest == str(ref["frames_sha256"]), (
        "the seeded simulation no longer reproduces the reference frames (simulate.py or the "
        "random generator changed): rerun benchmarks/peers/make_boost_corr_reference.py")
    return out


def boost_model(frames, dynamic_map, static_map, tau, level):
    """boost_corr 0.1.7's multi-tau g2 and error, in float64 (see the module docstring)."""
    n_t = frames.shape[0]
    used = (dynamic_map > 0).ravel()
    x = frames.reshape(n_t, -1)[:, used].astype(np.float64)
    dyn, sta = dynamic_map.ravel()[used], static_map.ravel()[used]
    n_dyn, n_sta = int(dynamic_map.max()), int(static_map.max())
    count = np.maximum(np.bincount(sta, minlength=n_sta + 1)[1:], 1)
    g2 = np.zeros((len(tau), n_dyn))
    err = np.zeros_like(g2)
    for i, (lag, lev) in enumerate(zip(tau, level)):
        b = 2 ** int(lev)
        t_l, k = n_t // b, int(lag) // b
        n = t_l - k
        s = x[: t_l * b].reshape(t_l, b, -1).sum(axis=1)
        G = (s[:n] * s[k:]).sum(axis=0) / (n * b * b)
        IP = s[k:].sum(axis=0) / (n * b)
        IF = s[:n].sum(axis=0) / (n * b)
        ipif = IP * IF
        g2_pixel = G / np.where(ipif == 0, 1e8, ipif)
        Gs, Ps, Fs = (np.bincount(sta, v, n_sta + 1)[1:] / count for v in (G, IP, IF))
        pf = Ps * Fs
        g2_static = Gs / np.where(pf == 0, 1e8, pf)
        for q in range(1, n_dyn + 1):
            sel = dyn == q
            err[i, q - 1] = g2_pixel[sel].std(ddof=1) / np.sqrt(sel.sum())
            g2[i, q - 1] = g2_static[np.unique(sta[sel]) - 1].mean()
    return g2, err


def _rel(a, b):
    return np.abs(np.asarray(a, float) / np.asarray(b, float) - 1)


def test_reference_matches_float64_model(ref, frames):
    """The stored boost_corr output is what the documented definition gives (bfloat16 aside)."""
    g2, err = boost_model(frames, ref["dynamic_map"], ref["static_map"], ref["tau"],
                          ref["tau_level"])
    assert _rel(g2, ref["normalized_g2"]).max() < 5e-4
    nz = ref["normalized_g2_err"] > 0
    assert _rel(err[nz], ref["normalized_g2_err"][nz]).max() < 1e-2
    assert np.allclose(err[~nz], 0, atol=1e-12)  # lag with one pair per pixel: g2_p == 1


def _speckle_g2(ref, frames):
    from speckle.io.dataset import ArrayDataset
    from speckle.xpcs.multitau import multitau_g2
    from speckle.xpcs.partitions import Partition

    part = Partition(ref["dynamic_map"], ref["static_map"], ref["dynamic_q"], ref["static_q"],
                     [f"ring {q + 1}" for q in range(len(ref["dynamic_q"]))], "qring")
    return multitau_g2(ArrayDataset(frames), part, buffers=8)


def _common(res, ref):
    tau_s = np.asarray(res.tau_frames).astype(np.int64)
    tau_b = ref["tau"].astype(np.int64)
    common, i_s, i_b = np.intersect1d(tau_s, tau_b, return_indices=True)
    # both tools use the same grid with 8 buffers: every boost_corr lag must be there
    assert len(common) == len(tau_b), (
        f"speckle lags {tau_s.tolist()} miss boost_corr lags "
        f"{sorted(set(tau_b.tolist()) - set(tau_s.tolist()))}")
    return common, i_s, i_b


def test_speckle_multitau_matches_boost_corr(ref, frames):
    res = _speckle_g2(ref, frames)
    common, i_s, i_b = _common(res, ref)
    g2_s = np.asarray(res.g2)[i_s]
    g2_b = ref["normalized_g2"][i_b]
    assert g2_s.shape == g2_b.shape
    rel = _rel(g2_s, g2_b)
    worst = np.unravel_index(np.argmax(rel), rel.shape)
    assert rel.max() < RTOL_G2, (
        f"max relative difference {rel.max():.2e} at lag {common[worst[0]]} frames, bin "
        f"{worst[1] + 1}: speckle {g2_s[worst]:.6f}, boost_corr {g2_b[worst]:.6f}")


def test_speckle_multitau_errors_match_boost_corr(ref, frames):
    res = _speckle_g2(ref, frames)
    common, i_s, i_b = _common(res, ref)
    err_s = np.asarray(res.g2_err)[i_s]
    err_b = ref["normalized_g2_err"][i_b]
    nz = err_b > 0
    assert _rel(err_s[nz], err_b[nz]).max() < RTOL_G2_ERR
    assert np.allclose(err_s[~nz], 0, atol=1e-9)
