"""The propagation (refocus) dashboard: an image as a wavefield, a region, a sweep of distances.

The chosen image becomes a complex field in one of three ways: an FTH hologram is inverted
first (:func:`speckle.imaging.workflow.run_fth`, centre found automatically); an amplitude image
is used as it is (flat phase); an intensity image gives the amplitude ``√I``. A saved complex
result (``result.h5`` of the FTH, CDI or propagation dashboard, chosen like any data) is the field
itself, with the region, energy and pixel size it was saved with. From a notebook,
:meth:`PropagationDashboard.set_field` shows any complex field (a CDI reconstruction, a
simulation). A region of the field is then refocused by the
:class:`~speckle.ui.imaging.refocus.RefocusPanel`.
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np

from ...backend import asnumpy
from ...errors import InvalidInputError
from ...imaging.workflow import object_region, run_fth
from ..common._common import styled
from ._base import ImagingDashboard, section
from .complex_view import ComplexImageView
from .refocus_controller import RefocusInput

__all__ = ["INPUT_MODES", "PropagationDashboard", "field_from_image", "propagation_dashboard"]

#: How a real image becomes a field: (value, label).
INPUT_MODES = (("hologram", "FTH hologram (invert it)"), ("amplitude", "amplitude"),
               ("intensity", "intensity (√)"))


def field_from_image(image, mode: str) -> tuple[np.ndarray, str, tuple | None]:
    """A complex field from a real image, a description of what was done, a suggested region.

    Parameters
    ----------
    image : array, (rows, cols)
        Real.
    mode : {"hologram", "amplitude", "intensity"}
        Invert it as an FTH hologram (centre found by cross-correlation), take it as the
        amplitude, or take its square root (negative values count as zero) as the amplitude.

    Returns
    -------
    field : numpy.ndarray
        complex128, same shape.
    description : str
    region : (int, int, int, int) or None
        For a hologram, its strongest cross-term (:func:`~speckle.imaging.workflow.object_region`).
    """
    image = np.asarray(asnumpy(image))
    if mode == "hologram":
        result = run_fth(image)
        c = result.center
        return result.reconstruction.astype(np.complex128), (
            f"FTH reconstruction (centre {c[0]:.2f}, {c[1]:.2f})"), object_region(result)
    finite = np.isfinite(image)
    clean = np.where(finite, image, 0.0)
    if mode == "amplitude":
        return clean.astype(np.complex128), "the image as amplitude, flat phase", None
    if mode == "intensity":
        return np.sqrt(np.maximum(clean, 0.0)).astype(np.complex128), (
            "the square root of the image as amplitude, flat phase"), None
    raise InvalidInputError(f"unknown input mode {mode!r}; choose one of "
                            f"{', '.join(m for m, _ in INPUT_MODES)}")


class PropagationDashboard(ImagingDashboard):
    """Propagation and refocusing as one widget.

    Parameters
    ----------
    **kwargs
        See :class:`~speckle.ui.imaging._base.ImagingDashboard` (``data_dirs``, ``upload_dir``,
        ``results_dir``, ``base_url``, ``server_root``); ``demos`` defaults to ``("fth",)``:
        the CDI demo is a diffraction pattern, not a field or a hologram.

    Attributes
    ----------
    chooser : DataChooser
    mode : ipywidgets.ToggleButtons
        How the chosen image becomes a field (:data:`INPUT_MODES`).
    field_view : ComplexImageView
    refocus : RefocusPanel
    field : numpy.ndarray or None
        The complex field shown.

    Notes
    -----
    CSS classes: ``speckle-propagation`` (the whole, also ``speckle-dashboard``),
    ``speckle-input-mode``, ``speckle-field`` (the field's :class:`ComplexImageView`), and the
    refocus panel's (``speckle-refocus``...).
    """

    def __init__(self, *, demos=("fth",), **kwargs):
        super().__init__(demos=demos, **kwargs)
        self.add_class("speckle-propagation")
        self.field = None
        self.label = ""
        self._raw = None  # the real image the field was made of (None: a field was given)
        self._given = "field"  # how a field was given without a real image
        self._quiet = False
        self.mode = styled(widgets.ToggleButtons(
            options=[(text, value) for value, text in INPUT_MODES], value="amplitude",
            description="the image is", style={"description_width": "90px",
                                               "button_width": "170px"}),
            "speckle-input-mode")
        self.field_view = styled(ComplexImageView(
            max_regions=1, view="complex", scale="sqrt",
            help_text="Drag around the part to refocus, or type its region; without a region "
                      "the whole field is propagated."), "speckle-field")
        self.children = [
            self.header("Propagation and refocus"),
            section("1. Data"), self.chooser, self.message,
            section("2. Field and region"), self.mode, self.field_view,
            section("3. Refocus"), self.refocus,
        ]
        self.mode.observe(self._on_mode, "value")

    # ---------------------------------------------------------------- data to field
    def _prepare(self, image, metadata, label):
        # the FTH demo is a hologram; the CDI demo is a diffraction pattern (phase it first)
        mode = "hologram" if label == "demo-fth" else self.mode.value
        field, what, region = field_from_image(image, mode)
        return {"image": image, "metadata": metadata, "label": label, "mode": mode,
                "field": field, "what": what, "region": region}

    def _prepare_saved(self, saved, label):
        if not np.iscomplexobj(saved.image):  # a real image: made a field like any other
            return self._prepare(np.asarray(saved.image, dtype=np.float64), saved.metadata,
                                 label)
        return {"image": None, "metadata": saved.metadata, "label": label, "mode": None,
                "field": saved.image.astype(np.complex128), "pitch": saved.pitch,
                "what": f"{saved.name} of a saved {saved.kind.upper()} result",
                "region": saved.region}

    def _show(self, prepared) -> None:
        self._raw = prepared["image"]
        self.label = prepared["label"]
        if self._raw is None:
            self._given = "saved result"
            self.refocus.suggest(energy=prepared["metadata"].energy, pitch=prepared["pitch"])
        else:
            self._quiet = True
            try:
                self.mode.value = prepared["mode"]
            finally:
                self._quiet = False
            self._suggest_refocus(prepared["metadata"], self._raw.shape)
        self.mode.disabled = self._raw is None  # a complex field is not made of an image
        self.field_view.clear_regions()
        self._set(prepared["field"], f"{self.label}: {prepared['what']}", prepared["region"])

    def _set(self, field, caption: str, region) -> None:
        self.field = field
        self.field_view.set_image(field, caption)
        if region is not None:
            self.field_view.add_region(*region)

    def _on_mode(self, change) -> None:
        if self._quiet or self._raw is None:
            return
        self.refocus.clear()
        raw, mode, label = self._raw, change["new"], self.label

        def work():
            return field_from_image(raw, mode)

        def done(value):
            field, what, region = value
            self.field_view.clear_regions()
            self._set(field, f"{label}: {what}", region)

        def failed(exc):
            self.message.error(exc, title="Cannot make a field of this image:")

        self.message.clear()
        self._tasks.start(work, done, failed)

    def set_field(self, field, label: str = "field", *, energy: float | None = None,
                  pixel_size: float | None = None) -> None:
        """Show a complex field given from code (for instance a CDI reconstruction).

        Parameters
        ----------
        field : array, (rows, cols)
            Complex or real, numpy or cupy.
        label : str
            Its name in captions and result folders.
        energy : float, optional
            Photon energy, eV.
        pixel_size : float, optional
            Pixel size of the field, m.
        """
        data = np.asarray(asnumpy(field))
        if data.ndim != 2:
            raise InvalidInputError(f"a field is one 2D image, got shape {data.shape}")
        self._tasks.invalidate()
        self._raw, self._given = None, "field"
        self.mode.disabled = True
        self.refocus.clear()
        self.message.clear()
        self.label = label
        self.field_view.clear_regions()
        self._set(data.astype(np.complex128), f"{label}: complex field given from code", None)
        self.refocus.suggest(energy=energy, pitch=pixel_size)

    # ---------------------------------------------------------------- refocus
    def _refocus_input(self) -> RefocusInput:
        view = self.field_view
        if view.image is None:
            raise InvalidInputError("choose data first (section 1), or give a field with "
                                    "set_field() in a notebook")
        return RefocusInput(field=view.crop(), label=self.label or "field", kind="propagation",
                            image=view.image, region=view.region)


def propagation_dashboard(**kwargs) -> PropagationDashboard:
    """Return the propagation (refocus) dashboard (display it as a notebook cell's last value).

    Parameters
    ----------
    **kwargs
        Passed to :class:`PropagationDashboard`.

    Examples
    --------
    >>> from speckle.ui.imaging import propagation_dashboard
    >>> propagation_dashboard()  # doctest: +SKIP
    """
    return PropagationDashboard(**kwargs)
