"""Shadows (speckle.imaging.shadows.find_shadows): a blocked band planted on simulated patterns
is found whole and nothing else is, clean patterns have none, masking it brings the
reconstruction back, and the ALS CDI demo's blocked band is found."""

import numpy as np
import pytest
from test_imaging_workflow import measurement

from speckle.errors import InvalidInputError
from speckle.imaging import CdiOptions, run_cdi
from speckle.imaging.align import normalized_error
from speckle.imaging.prepare import prepare_pattern
from speckle.imaging.shadows import find_shadows

N = 256


def blocked(seed):
    """A simulated measurement with a band 16 pixels wide that reads 0 (not in the mask)
    12-28 pixels from the centre, where the pattern is bright."""
    obj, pattern, mask = measurement(seed, N)
    band = np.zeros((N, N), bool)
    band[:, 100:116] = True
    return obj, np.where(band, 0.0, pattern), mask, band


@pytest.mark.parametrize("seed", [0, 1])
def test_a_blocked_band_is_found_whole_and_nothing_else(seed):
    _, pattern, mask, band = blocked(seed)
    shadows = find_shadows(pattern, mask)
    assert shadows[band & ~mask].mean() > 0.99  # (a corner pixel may have no mirror image)
    assert (shadows & ~band).sum() < 0.01 * N * N  # the penumbra grown around it, no more
    assert not (shadows & mask).any()


def test_clean_patterns_have_no_shadow():
    for seed in range(4):
        _, pattern, mask = measurement(seed, N)
        assert not find_shadows(pattern, mask).any()


def test_masking_the_shadow_brings_the_reconstruction_back():
    obj, pattern, mask, _ = blocked(1)
    freed = run_cdi(pattern, CdiOptions(seed=1), mask=mask)
    kept = run_cdi(pattern, CdiOptions(seed=1, mask_shadows=False), mask=mask)
    assert freed.shadowed > 16 * N * 0.9 and kept.shadowed == 0
    assert normalized_error(obj, freed.reconstruction) < 0.1
    assert normalized_error(obj, kept.reconstruction) > 0.2
    assert "Friedel" in " ".join(freed.verdict.reasons)


def test_the_demo_band_is_a_shadow(shared_data):
    from speckle.io.images import read_image

    raw, _ = read_image(shared_data / "als-demo" / "cdi.fits")
    prepared = prepare_pattern(raw, background="auto")
    shadows = find_shadows(prepared.pattern, prepared.mask)
    cols = np.nonzero(shadows.any(axis=0))[0]
    assert cols.min() < 20 and 85 < cols.max() < 100  # the blocked band on the left
    assert shadows.sum() > 30_000
    masked = prepare_pattern(raw, background="auto", mask_shadows=True)
    assert masked.shadowed == shadows.sum() and masked.mask[shadows].all()


def test_refusals():
    with pytest.raises(InvalidInputError, match="2D"):
        find_shadows(np.ones((4, 4)))
