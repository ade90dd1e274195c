"""Direct, slow evaluations of the published XPCS definitions, used as the truth in tests.

Written from the definitions (FIELD-NOTES, APS "symmetric" normalisation), with plain loops
and float64, independently of speckle's streaming implementation.
"""

import numpy as np


def binned_series(x, w, level):
    """Average pairs ``level`` times; a binned entry is valid only if both halves are."""
    for _ in range(level):
        m = len(x) // 2
        nw = w[0:2 * m:2] * w[1:2 * m:2]
        x = 0.5 * (x[0:2 * m:2] + x[1:2 * m:2]) * nw[:, None]
        w = nw
    return x, w


def per_pixel_sums(frames, pixels, tau, level, weights=None):
    """Per-pixel G, IP, IF means over valid pairs at one lag (frames) of one level."""
    T = len(frames)
    w = np.ones(T) if weights is None else np.asarray(weights, float)
    x = frames.reshape(T, -1)[:, pixels].astype(np.float64) * w[:, None]
    x, w = binned_series(x, w, level)
    k = tau >> level
    m = len(x)
    pw = w[:m - k] * w[k:]
    n = pw.sum()
    G = (x[:m - k] * x[k:] * pw[:, None]).sum(0) / n
    IP = (x[:m - k] * pw[:, None]).sum(0) / n
    IF = (x[k:] * pw[:, None]).sum(0) / n
    return G, IP, IF


def symmetric_g2(frames, partition, taus, levels, weights=None):
    """g2 and its error per dynamic bin at the given lags, from the definitions."""
    used = partition.mask.ravel()
    pixels = np.flatnonzero(used)
    s = partition.static_map.ravel()[pixels]
    d = partition.dynamic_map.ravel()[pixels]
    n_dyn = partition.n_dynamic
    g2 = np.zeros((len(taus), n_dyn))
    err = np.zeros((len(taus), n_dyn))
    for i, (tau, level) in enumerate(zip(taus, levels)):
        G, IP, IF = per_pixel_sums(frames, pixels, int(tau), int(level), weights)
        for b in range(1, n_dyn + 1):
            statics = np.unique(s[d == b])
            vals = [G[s == st].mean() / (IP[s == st].mean() * IF[s == st].mean())
                    for st in statics]
            g2[i, b - 1] = np.mean(vals)
            gp = (G / (IP * IF))[d == b]
            err[i, b - 1] = gp.std(ddof=1) / np.sqrt(len(gp))
    return g2, err
