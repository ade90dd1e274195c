"""FTH: centring, inversion against simulated holograms with known objects, several references,
helicity difference, phase rotation, and the real demonstration hologram end to end."""

import numpy as np
import pytest
from scipy import ndimage

from speckle.errors import InvalidInputError
from speckle.imaging.fth import (find_center, detect_cross_terms, helicity_difference,
                                 reconstruct, rotate_phase_to_real)
from speckle.imaging.propagation import propagate, wavelength_from_energy

ENERGY = 778.0  # eV (Fe/Co L edges region)
LAM = wavelength_from_energy(ENERGY)
N = 256


def disc(centre, radius, n=N):
    yy, xx = np.mgrid[:n, :n]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def blobs(centre, radius, seed, n=N):
    """Random sharp-ish discs (1.5-4 px) inside a circle: object features, values 0..1."""
    rng = np.random.default_rng(seed)
    img = np.zeros((n, n))
    for _ in range(40):
        dr, dc = rng.uniform(-0.8 * radius, 0.8 * radius, 2)
        img[disc((centre[0] + dr, centre[1] + dc), rng.uniform(1.5, 4), n)] = 1
    return ndimage.gaussian_filter(img, 0.6)


def simulate_fth(kind="absorbing", *, obj=(128, 88), refs=((128, 168),), radius=24,
                 ref_radius=0.0, pixel=30e-9, defocus=0.0, photons=None, seed=0):
    """A soft X-ray FTH hologram: an object in a round aperture plus pinhole reference(s).

    The object's exit wave ``o`` (its own plane) is propagated by ``defocus`` to the mask plane
    where the references are; the hologram is ``|FFT(exit)|²`` with its zero frequency at
    (N/2, N/2). Returns (hologram, o).
    """
    f = blobs(obj, radius, seed)
    aperture = disc(obj, radius).astype(float)
    if kind == "absorbing":
        o = aperture * (1 - 0.6 * f)
    elif kind == "phase":
        o = aperture * np.exp(0.8j * f)
    else:
        o = aperture * np.exp((-0.3 + 0.6j) * f)
    exit_wave = propagate(o, defocus, pixel, wavelength=LAM) if defocus else o.astype(complex)
    for r in refs:
        exit_wave = exit_wave + 3.0 * disc(r, ref_radius)
    hologram = np.abs(np.fft.fftshift(np.fft.fft2(exit_wave))) ** 2
    if photons:
        rng = np.random.default_rng(seed + 1000)
        hologram = rng.poisson(hologram * photons / hologram.sum()).astype(float)
    return hologram, o


def crop(image, centre, half):
    r, c = (int(round(v)) for v in centre)
    return image[r - half:r + half, c - half:c + half]


def normalized_error(a, b):
    """min over a complex scale s of |s a - b| / |b|."""
    a, b = a.ravel(), b.ravel()
    overlap = abs(np.vdot(a, b)) ** 2 / (np.vdot(a, a).real * np.vdot(b, b).real)
    return float(np.sqrt(max(0.0, 1 - overlap)))


# -- centre (found by speckle.imaging.center.find_center: tests/test_center.py) ---------------

def test_a_sub_pixel_centre_is_applied_exactly():
    """The Fourier shift theorem: a hologram shifted by s, inverted about N/2 + s, is the
    unshifted hologram inverted about N/2."""
    _, o = simulate_fth("mixed")
    exit_wave = o + 3.0 * disc((128, 168), 0)
    yy, xx = np.mgrid[:N, :N]
    s = (2.3, -0.4)
    ramp = np.exp(2j * np.pi * (s[0] * yy + s[1] * xx) / N)
    plain = np.abs(np.fft.fftshift(np.fft.fft2(exit_wave))) ** 2
    shifted = np.abs(np.fft.fftshift(np.fft.fft2(exit_wave * ramp))) ** 2
    a = reconstruct(plain, center=(N / 2, N / 2)).image
    b = reconstruct(shifted, center=(N / 2 + s[0], N / 2 + s[1])).image
    assert np.linalg.norm(a - b) / np.linalg.norm(a) < 1e-10


# -- inversion -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["absorbing", "phase"])
def test_reconstruction_reproduces_the_object(kind):
    """Point reference at p_r: the cross-term at p_o - p_r is the object (upright, not
    conjugated); the twin at p_r - p_o is its conjugate, point-inverted."""
    hologram, o = simulate_fth(kind, photons=1e9)
    rec = reconstruct(hologram)
    assert rec.center == pytest.approx((N / 2, N / 2), abs=0.1)  # phase: not symmetric
    truth = crop(o, (128, 88), 28)
    term = crop(rec.image, (128, 128 - 80), 28)
    assert normalized_error(term, truth) < 0.05
    # the twin: conjugated and point-inverted (sample N/2 + x mirrors N/2 - x)
    twin = np.conj(rec.image[::-1, ::-1])
    twin = crop(np.roll(twin, (1, 1), (0, 1)), (128, 128 - 80), 28)
    assert normalized_error(twin, truth) < 0.05
    # the wrong orientation does not match: the test can fail
    assert normalized_error(term[::-1, ::-1], truth) > 0.3


def test_several_references_each_give_the_object():
    refs = ((128, 168), (60, 100))
    hologram, o = simulate_fth("absorbing", obj=(160, 88), refs=refs, photons=1e9)
    rec = reconstruct(hologram)
    truth = crop(o, (160, 88), 28)
    found = [(t.row, t.col) for t in detect_cross_terms(rec.image)]
    for ref in refs:
        offset = np.subtract((160, 88), ref)
        term = crop(rec.image, (128 + offset[0], 128 + offset[1]), 28)
        assert normalized_error(term, truth) < 0.05
        for sign in (1, -1):  # the term and its twin are both located
            expected = (128 + sign * offset[0], 128 + sign * offset[1])
            assert min(np.hypot(r - expected[0], c - expected[1]) for r, c in found) < 3


def test_apodization_window_follows_its_definition():
    hologram, _ = simulate_fth(photons=1e9)
    a = 0.4
    rows = np.arange(N)[:, None] - N / 2
    cols = np.arange(N)[None, :] - N / 2
    rho = np.hypot(rows / (N / 2), cols / (N / 2))
    window = np.where(rho <= 1 - a, 1.0, np.where(rho >= 1, 0.0,
                                                  np.cos(np.pi / 2 * (rho - 1 + a) / a) ** 2))
    got = reconstruct(hologram, center=(N / 2, N / 2), apodization=a).image
    want = reconstruct(hologram * window, center=(N / 2, N / 2)).image
    assert np.allclose(got, want, atol=1e-9 * np.abs(want).max())
    plain = reconstruct(hologram, center=(N / 2, N / 2), apodization=0).image
    assert np.allclose(plain, np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(hologram))))
    with pytest.raises(InvalidInputError):
        reconstruct(hologram, apodization=1.5)


def test_reconstruct_refuses_bad_input():
    with pytest.raises(InvalidInputError):
        reconstruct(np.ones((3, 3)))
    with pytest.raises(InvalidInputError):
        reconstruct(np.ones((16, 16), complex))
    with pytest.raises(InvalidInputError):
        reconstruct(np.ones((16, 16)), center=(40, 2))
    with pytest.raises(InvalidInputError):
        reconstruct(np.full((16, 16), np.nan))


# -- magnetic contrast -----------------------------------------------------------------------

def magnetic_pair(alpha=1.3, gamma=0.7):
    """Holograms of opposite helicities of an object with magnetic domains (zero net moment),
    recorded with different incident fluxes alpha and gamma."""
    obj, ref = (128, 88), (128, 168)
    aperture = disc(obj, 24).astype(float)
    domains = np.sign(ndimage.gaussian_filter(np.random.default_rng(5).normal(size=(N, N)), 3))
    m = domains * aperture
    m -= aperture * m.sum() / aperture.sum()  # zero net magnetisation
    xmcd = 0.08 * np.exp(0.7j)  # magneto-optical constant: absorption and phase parts
    charge = aperture * 0.8
    holo = {}
    for sign, flux in ((1, alpha), (-1, gamma)):
        exit_wave = charge * (1 + sign * xmcd * m) + 3.0 * disc(ref, 0)
        holo[sign] = flux * np.abs(np.fft.fftshift(np.fft.fft2(exit_wave))) ** 2
    return holo[1], holo[-1], charge * m


def test_helicity_difference_default_factor_cancels_the_charge():
    pos, neg, magnetic = magnetic_pair()
    f = pos.sum() / (pos + neg).sum()
    diff = helicity_difference(pos, neg)
    assert np.allclose(diff, pos - f * (pos + neg))
    assert np.allclose(helicity_difference(pos, neg, 0.5), (pos - neg) / 2)
    region = (128 - 28, 128 + 28, 48 - 28, 48 + 28)
    truth = magnetic[region[0]:region[1], 88 - 28:88 + 28]

    def magnetic_image(hologram):
        rec = reconstruct(hologram, center=(N / 2, N / 2)).image
        rotated, _ = rotate_phase_to_real(rec, region)
        return rotated[region[0]:region[1], region[2]:region[3]]

    good = magnetic_image(diff)
    # magnetic contrast in the real part, proportional to the true moment map
    assert np.linalg.norm(good.imag) < 1e-3 * np.linalg.norm(good.real)
    corr = np.corrcoef(good.real.ravel(), truth.ravel())[0, 1]
    assert abs(corr) > 0.999
    # without the normalisation the unequal fluxes leak charge into the difference
    leaky = magnetic_image(helicity_difference(pos, neg, 0.5))
    assert abs(np.corrcoef(leaky.real.ravel(), truth.ravel())[0, 1]) < 0.9


def test_rotate_phase_to_real():
    rng = np.random.default_rng(3)
    m = rng.normal(0.3, 1.0, (40, 50))
    for phi0 in (0.4, -2.5, 3.0):
        z = m * np.exp(1j * phi0)
        rotated, phi = rotate_phase_to_real(z)
        assert -np.pi < phi <= np.pi
        assert np.allclose(rotated.imag, 0, atol=1e-12)
        assert rotated.real.sum() > 0
        assert np.allclose(rotated.real, m if np.isclose(np.cos(phi - phi0), 1) else -m)
    # only the region decides; outside it another phase stays
    z = np.where(np.arange(50)[None, :] < 25, m * np.exp(1j), m * np.exp(2j))
    _, phi = rotate_phase_to_real(z, region=(0, 40, 0, 25))
    assert phi == pytest.approx(1.0) or phi == pytest.approx(1.0 - np.pi)
    mask = np.zeros(z.shape, bool)
    mask[:, 30:] = True
    _, phi = rotate_phase_to_real(z, region=mask)
    assert np.cos(phi - 2.0) ** 2 == pytest.approx(1.0)
    with pytest.raises(InvalidInputError):
        rotate_phase_to_real(z, region=(0, 0, 0, 10))


# -- the real demonstration hologram ---------------------------------------------------------

def test_real_demo_hologram_end_to_end(shared_data):
    from speckle.io.images import read_image

    hologram, _ = read_image(shared_data / "als-demo" / "fth.fits")
    rows, cols = hologram.shape
    centre = find_center(hologram)
    assert abs(centre[0] - rows / 2) < 2 and abs(centre[1] - cols / 2) < 2
    rec = reconstruct(hologram, center=centre, apodization=0.1)
    image = rec.image
    terms = detect_cross_terms(image)
    assert len(terms) >= 2
    mid = np.array([rows // 2, cols // 2])
    a = terms[0]
    offset = np.array([a.row, a.col]) - mid
    # away from the centre, outside the autocorrelation
    assert np.hypot(*offset) > 0.5 * (a.box[1] - a.box[0]) + 20
    # its twin sits at the point-symmetric position with the same strength
    twin = min(terms[1:], key=lambda t: np.hypot(t.row - (mid[0] - offset[0]),
                                                 t.col - (mid[1] - offset[1])))
    assert np.hypot(twin.row - (mid[0] - offset[0]), twin.col - (mid[1] - offset[1])) < 1.5
    assert twin.strength == pytest.approx(a.strength, rel=0.05)
    # FTH geometry: the autocorrelation (centre) is about twice as wide as an object term
    m = ndimage.gaussian_filter(np.abs(image), 2)
    level = 0.1 * m[a.box[0]:a.box[1], a.box[2]:a.box[3]].max()
    labels, _ = ndimage.label(m > level)
    central = labels == labels[tuple(mid)]
    term = labels == labels[int(round(a.row)), int(round(a.col))]
    width = lambda sel: np.ptp(np.nonzero(sel)[1]) + 1  # noqa: E731
    assert 1.6 < width(central) / width(term) < 2.4
    # the cross-term stands far above the empty field around it
    background = np.median(np.abs(image))
    assert np.abs(image[term]).mean() > 100 * background
