"""The intensity behind a beamstop (speckle.imaging.beamstop.fill_beamstop) against the
truth: holograms with small references and patterns of compact objects, with Poisson noise."""

import numpy as np
import pytest

from speckle.errors import InvalidInputError
from speckle.imaging.beamstop import MAX_HIDDEN, fill_beamstop
from speckle.imaging.simulate import fth_sample, random_object, simulated_pattern


def hidden_by(pattern, radius):
    n = pattern.shape[0]
    yy, xx = np.indices(pattern.shape) - n // 2
    return np.hypot(yy, xx) <= radius


@pytest.mark.parametrize("radius", [2, 4])
def test_a_hologram_behind_a_beamstop_is_filled_from_its_compact_autocorrelation(radius):
    wave = fth_sample((512, 512), reference_offsets=((0, 150), (-160, 40)), reference_radius=1,
                      seed=1)
    truth = simulated_pattern(wave, 1e9, seed=1)
    stop = hidden_by(truth, radius)
    filled, hidden = fill_beamstop(np.where(stop, 0.0, truth), stop)
    np.testing.assert_array_equal(hidden, stop)
    error = np.linalg.norm(filled[stop] - truth[stop]) / np.linalg.norm(truth[stop])
    assert error < 0.01  # the hidden centre holds 1e8 of the 1e9 photons
    np.testing.assert_array_equal(filled[~stop], truth[~stop])  # measured pixels untouched
    # filling from the neighbours instead is far off: the test can fail
    ring = hidden_by(truth, radius + 1) & ~stop
    assert abs(truth[ring].mean() - truth[stop].mean()) / truth[stop].mean() > 0.1


def test_the_pattern_of_a_compact_object_is_filled_too():
    truth = simulated_pattern(random_object((256, 256), seed=3), 1e9, seed=3)
    stop = hidden_by(truth, 3)
    filled, _ = fill_beamstop(np.where(stop, 0.0, truth), stop)
    assert np.linalg.norm(filled[stop] - truth[stop]) / np.linalg.norm(truth[stop]) < 0.05


def test_nothing_is_filled_without_a_central_hole_or_with_a_huge_one():
    truth = simulated_pattern(random_object((128, 128), seed=4), 1e8, seed=4)
    mask = np.zeros(truth.shape, bool)
    mask[10:14, 20:24] = True  # unmeasured, but not at the centre
    filled, hidden = fill_beamstop(truth, mask)
    assert not hidden.any() and (filled[mask] == 0).all()
    huge = hidden_by(truth, 12)
    assert huge.sum() > MAX_HIDDEN
    assert not fill_beamstop(truth, huge)[1].any()


def test_refusals():
    with pytest.raises(InvalidInputError, match="extent's shape"):
        fill_beamstop(np.ones((32, 32)), hidden_by(np.ones((32, 32)), 2),
                      extent=np.ones((8, 8), bool))
