"""Complex images: known phase gives known hue, magnitude gives brightness, zero is black."""

import numpy as np
import pytest

from speckle.errors import InvalidInputError
from speckle.imaging.display import SCALES, brightness, complex_to_rgb, plot_complex


@pytest.mark.parametrize("phase,rgb", [
    (0.0, (1, 0, 0)),                  # red
    (2 * np.pi / 3, (0, 1, 0)),        # green
    (4 * np.pi / 3, (0, 0, 1)),        # blue
    (-2 * np.pi / 3, (0, 0, 1)),       # the same hue: the colour circle is cyclic
    (np.pi, (0, 1, 1)),                # cyan
    (np.pi / 3, (1, 1, 0)),            # yellow
    (-np.pi / 3, (1, 0, 1)),           # magenta
])
def test_known_phase_gives_known_hue(phase, rgb):
    field = np.full((3, 4), 2.0 * np.exp(1j * phase))
    out = complex_to_rgb(field)
    assert out.shape == (3, 4, 3)
    assert np.allclose(out, rgb, atol=1e-9)


def test_zero_and_missing_are_black_and_magnitude_is_brightness():
    field = np.array([[0, 1, 0.5, np.nan], [4, 0.25, 2, np.inf]], complex) * np.exp(0.4j)
    out = complex_to_rgb(field, vmax=1.0)
    assert np.all(out[0, 0] == 0) and np.all(out[0, 3] == 0) and np.all(out[1, 3] == 0)
    value = out.max(axis=-1)  # HSV value with saturation 1 = the largest channel
    assert value[0, 1] == pytest.approx(1.0)
    assert value[0, 2] == pytest.approx(0.5)
    assert value[1, 0] == pytest.approx(1.0)  # above vmax: clipped
    assert value[1, 1] == pytest.approx(0.25)
    # the default vmax is the largest magnitude
    assert complex_to_rgb(field).max(axis=-1)[1, 0] == pytest.approx(1.0)
    assert complex_to_rgb(field).max(axis=-1)[1, 2] == pytest.approx(0.5)


def test_scales():
    m = np.array([0.0, 0.001, 0.01, 0.1, 0.25, 1.0])
    assert np.allclose(brightness(m, "linear"), m)
    assert np.allclose(brightness(m, "sqrt"), np.sqrt(m))
    assert np.allclose(brightness(m, "log", decades=3), [0, 0, 1 / 3, 2 / 3, 1 + np.log10(0.25) / 3,
                                                         1])
    assert np.allclose(brightness(m, "log", vmax=0.1, decades=2), [0, 0, 0.5, 1, 1, 1])
    assert np.all(brightness(np.zeros(4), "log") == 0)
    assert SCALES == ("linear", "sqrt", "log")
    with pytest.raises(InvalidInputError):
        complex_to_rgb(np.ones((2, 2)), scale="gamma")


def test_real_input_and_shape_checks():
    out = complex_to_rgb(np.array([[1.0, -1.0]]))
    assert np.allclose(out[0, 0], (1, 0, 0)) and np.allclose(out[0, 1], (0, 1, 1))
    with pytest.raises(InvalidInputError):
        complex_to_rgb(np.ones((2, 2, 2)))


def test_plot_complex_makes_a_figure():
    field = np.exp(1j * np.linspace(0, 2 * np.pi, 64))[None, :] * np.ones((32, 1))
    fig = plot_complex(field, "sqrt", title="t", pixel_size=20e-9)
    ax = fig.axes[0]
    assert ax.get_title() == "t" and "µm" in ax.get_xlabel()
    image = ax.get_images()[0].get_array()
    assert np.allclose(image, complex_to_rgb(field, "sqrt"))
