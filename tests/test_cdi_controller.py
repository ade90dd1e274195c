"""The CDI page's controller on its own: plain Python, no widgets.

What the page does is checked here without a widget: a typed beamstop ends up in the prepared
pattern's mask, rectangles on the autocorrelation choose the support, the fields give the
options ``speckle cdi`` builds for the same values, a run writes its result folder.
"""


import numpy as np
import pytest

from speckle.cli import build_parser
from speckle.cli.cdi import options_from_args
from speckle.errors import InvalidInputError
from speckle.imaging.options import CdiOptions
from speckle.io.imaging_result import read_imaging_result
from speckle.ui.imaging.cdi_controller import CdiController, CdiFields

N = 64


def _pattern(seed=0):
    """Noisy far-field intensity of a textured ellipse (zero frequency in the middle pixel)."""
    yy, xx = np.mgrid[:N, :N]
    obj = np.where(((yy - 32) / 7.0) ** 2 + ((xx - 31) / 6.0) ** 2 <= 1,
                   1.0 + 0.5 * np.cos(xx / 2.0) * np.sin(yy / 3.0), 0.0)
    intensity = np.abs(np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(obj)))) ** 2
    return np.random.default_rng(seed).poisson(intensity / intensity.max() * 1e6).astype(float)


def _shown(controller, image):
    controller.apply(controller.prepare(image))
    return controller.shown


def test_a_typed_beamstop_ends_up_in_the_mask():
    image = _pattern()
    c = CdiController()
    before = _shown(c, image).prepared.mask
    assert not before[40:44, 10:13].any()  # measured pixels away from the centre
    assert c.mask_regions.add_text("40:44,10:13") == [(40, 44, 10, 13)]
    after = _shown(c, image).prepared.mask
    assert after[40:44, 10:13].all()
    np.testing.assert_array_equal(after & ~before, _box((40, 44, 10, 13)) & ~before)
    assert c.options().mask_rects == ((40, 44, 10, 13),)

    c.fields.bin_factor = 2  # binning moves the pixels: the rectangles go
    c.geometry_changed()
    assert c.mask_regions.regions == [] and c.options().mask_rects == ()


def _box(region):
    r0, r1, c0, c1 = region
    box = np.zeros((N, N), bool)
    box[r0:r1, c0:c1] = True
    return box


def test_rectangles_on_the_autocorrelation_choose_the_support():
    c = CdiController()
    with pytest.raises(InvalidInputError, match="choose a diffraction pattern first"):
        c.initial_support()
    _shown(c, _pattern())
    assert c.fields.support_mode == "auto"
    automatic = c.initial_support()
    assert automatic.any() and c.options().support == "auto"

    c.support_regions.add(22, 43, 22, 41)
    assert c.fields.support_mode == "rectangles"
    support = c.initial_support()
    np.testing.assert_array_equal(support, _box((22, 43, 22, 41)))
    o = c.options()
    assert o.support == "rectangles" and o.support_rects == ((22, 43, 22, 41),)

    c.support_regions.clear()  # rectangles chosen, none drawn: say what to do
    with pytest.raises(InvalidInputError, match="draw at least one rectangle"):
        c.make_job()
    c.fields.support_mode = "auto"
    assert c.options().support == "auto" and c.make_job().options.support == "auto"


@pytest.mark.parametrize("background", ["390", "p1", "auto", "none"])
def test_the_fields_give_the_options_of_speckle_cdi(background):
    c = CdiController()
    _shown(c, _pattern())
    c.support_regions.add_text("20:40,18:44; 30:36,30:36")
    f = c.fields
    f.background, f.mask_below, f.mask_zeros, f.mask_shadows = background, "5", True, False
    f.center, f.bin_factor, f.support_threshold = True, 2, ""
    f.schedule, f.rounds, f.trials, f.beta, f.seed = "10*ER + 30*HIO", 3, 2, 0.8, "7"
    f.shrinkwrap, f.shrinkwrap_sigma, f.shrinkwrap_threshold = False, 1.5, 0.2
    f.constraint, f.incoherent_floor = "real", False
    args = build_parser().parse_args([
        "cdi", "p.npy", "--out", "r.h5", "--background", background, "--mask-below", "5",
        "--mask-zeros", "--keep-shadows", "--center", "auto", "--bin", "2",
        "--support", "20:40,18:44", "--support", "30:36,30:36",
        "--schedule", "10*ER + 30*HIO", "--rounds", "3", "--trials", "2", "--beta", "0.8",
        "--seed", "7", "--no-shrinkwrap", "--shrinkwrap-sigma", "1.5",
        "--shrinkwrap-threshold", "0.2", "--real", "--no-incoherent-floor"])
    assert c.options() == options_from_args(args)


def test_the_default_fields_are_the_default_options():
    c = CdiController()
    assert c.options() == CdiOptions()
    assert CdiFields.from_options(CdiOptions()) == c.fields


def test_fields_that_cannot_be_read_say_which():
    c = CdiController()
    for name, value, words in (("mask_below", "two", "mask below"),
                               ("seed", "abc", "the seed must be a whole number"),
                               ("support_threshold", "x", "the support threshold"),
                               ("schedule", "20*ER + 80*HOI", "'HOI'")):
        old = getattr(c.fields, name)
        setattr(c.fields, name, value)
        with pytest.raises(InvalidInputError, match=words):
            c.options()
        setattr(c.fields, name, old)
    c.fields.schedule = "20*ER + 80*HIO"
    c.fields.rounds, c.fields.trials = 3, 2
    assert c.iterations() == (100, 300, 600)


def test_a_template_round_trips_through_the_fields():
    o = CdiOptions(background=12.5, mask_below=3.0, mask_zeros=True, center="auto",
                   bin_factor=2, support="rectangles", support_rects=((1, 9, 2, 8),),
                   mask_rects=((0, 2, 0, 2),), schedule="5*ER", rounds=2, trials=3, beta=0.7,
                   seed=11, shrinkwrap=False, shrinkwrap_sigma=2.0,
                   shrinkwrap_threshold=0.25, positivity=True, real=True,
                   incoherent_floor=False, mask_shadows=False)
    c = CdiController()
    c.apply_options(o)
    c.apply(c.prepare(_pattern()[:32, :32]))
    c.apply_rectangles(o)
    assert c.options() == o
    with pytest.raises(InvalidInputError, match="bins 3×3"):
        c.apply_options(CdiOptions(bin_factor=3))


def test_a_run_writes_its_result_folder(tmp_path):
    c = CdiController()
    c.label = "simulated"
    _shown(c, _pattern())
    c.fields.schedule, c.fields.rounds, c.fields.trials = "20*ER + 40*HIO", 1, 1
    job = c.make_job()
    result = c.phase(job)
    c.accept(result, job)
    steps = []
    c.write(result, job, b"\x89PNG picture", lambda f, s: steps.append(f), tmp_path)
    assert steps == sorted(steps) and c.folder.parent == tmp_path
    assert sorted(p.name for p in c.folder.iterdir()) == sorted(
        p.name for p in c.files.values())
    saved = read_imaging_result(c.files["hdf5"])
    np.testing.assert_allclose(saved.reconstruction, result.reconstruction)
    assert c.choose_window(whole_frame=True) == (0, N, 0, N)
    obj, region = c.refocus_region((2, 10, 3, 9))
    assert obj.shape == (N, N) and region == (2, 10, 3, 9)
    window = c.choose_window(whole_frame=False)
    _, region = c.refocus_region((2, 10, 3, 9))
    assert region == (window[0] + 2, window[0] + 10, window[2] + 3, window[2] + 9)
    c.clear_result()
    with pytest.raises(InvalidInputError, match="run the phase retrieval first"):
        c.refocus_region(None)
