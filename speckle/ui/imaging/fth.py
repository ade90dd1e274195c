"""The FTH reconstruction dashboard: hologram to complex image, a region, refocus, downloads.

A thin layer over :func:`speckle.imaging.workflow.run_fth` (the same as ``speckle fth``). Data
come as in the XPCS dashboard (beamline folders, upload, demos). The hologram's centre is
found (editable), the hologram inverted with an optional apodization, and the reconstruction
shown as a complex image with the verdict; the strongest cross-term is proposed as the region,
which the user may redraw. The saved ``result.h5`` is the command line's
(:func:`speckle.io.imaging_result.write_imaging_result`). Two holograms of opposite helicity give the magnetic (XMCD) difference, whose
global phase can be rotated so that the contrast sits in the real part. The region is refocused
by the :class:`~speckle.ui.imaging.refocus.RefocusPanel`.
"""

from __future__ import annotations

import html
from dataclasses import replace
from pathlib import Path

import ipywidgets as widgets
import numpy as np

from ...errors import InvalidInputError
from ...imaging.fth import rotate_phase_to_real
from ...imaging.options import FthOptions
from ...imaging.workflow import object_region, run_fth
from ...io.imaging_result import write_imaging_result
from ..common._common import MessageBox, Tasks, styled
from ..common.beamtime import apply_refocus, refocus_of
from ..common.downloads import links_html
from ..common.export import new_result_folder
from ._base import ImagingDashboard, section
from .complex_view import ComplexImageView
from .refocus_controller import RefocusInput
from .render import image_png, log_decades, render_rgb

__all__ = ["FthDashboard", "fth_dashboard"]


def _float(description: str, css: str, width="200px", step=0.1):
    return styled(widgets.FloatText(value=0.0, description=description, step=step,
                                    style={"description_width": "90px"},
                                    layout=widgets.Layout(width=width)), css)


class FthDashboard(ImagingDashboard):
    """Fourier transform holography as one widget.

    Parameters
    ----------
    **kwargs
        See :class:`~speckle.ui.imaging._base.ImagingDashboard` (``data_dirs``, ``upload_dir``,
        ``results_dir``, ``base_url``, ``server_root``, ``demos``).

    Attributes
    ----------
    chooser : DataChooser
    hologram_view, reconstruction_view : ComplexImageView
    refocus : RefocusPanel
    hologram : numpy.ndarray or None
        The hologram inverted (the helicity difference when that is on).
    result : FthResult or None
        The last reconstruction (:func:`speckle.imaging.workflow.run_fth`).
    phase : float
        The global phase (radians) taken off the reconstruction ("rotate to real"); 0 if none.
    files : dict of str to pathlib.Path
        The saved reconstruction's files (``"hdf5"``, ``"png"``, ``"hologram_png"``).

    Notes
    -----
    CSS classes: ``speckle-fth`` (the whole, also ``speckle-dashboard``), ``speckle-hologram``
    (the hologram's :class:`ComplexImageView`), ``speckle-fth-center-row``,
    ``speckle-fth-center-col``, ``speckle-find-center``, ``speckle-fth-apodization``,
    ``speckle-reconstruct``, ``speckle-fth-status``, ``speckle-helicity-plus``,
    ``speckle-helicity-minus``, ``speckle-helicity-difference``, ``speckle-reconstruction``
    (the reconstruction's view), ``speckle-rotate-phase``, ``speckle-save-reconstruction``,
    ``speckle-reconstruction-download``; the refocus panel's classes (``speckle-refocus``...).
    """

    #: A saved FTH result (``result.h5``) chosen as data is reconstructed from its hologram.
    saved_image_names = ("hologram",)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_class("speckle-fth")
        self.hologram = None
        self.label = ""
        self.result = None
        self.phase = 0.0
        self.files: dict[str, Path] = {}
        self._raw = None
        self._quiet = False
        self._helicity: dict[str, tuple[np.ndarray, str]] = {}
        self._work = Tasks("fth")

        self.hologram_view = styled(ComplexImageView(
            max_regions=0, view="magnitude", scale="log", views=("magnitude",),
            figsize=(4.6, 4.0)), "speckle-hologram")
        self.center_row = _float("centre row", "speckle-fth-center-row")
        self.center_col = _float("centre col", "speckle-fth-center-col")
        self.find_button = styled(widgets.Button(description="Find centre", icon="crosshairs",
                                                 tooltip="cross-correlate the hologram with "
                                                         "its 180°-rotated copy"),
                                  "speckle-find-center")
        self.apodization = styled(widgets.FloatSlider(
            value=0.0, min=0.0, max=1.0, step=0.02, description="apodization",
            tooltip="smooth edge window on the hologram, fraction of the half-size",
            style={"description_width": "90px"}, layout=widgets.Layout(width="320px")),
            "speckle-fth-apodization")
        self.reconstruct_button = styled(widgets.Button(description="Reconstruct", icon="play",
                                                        button_style="primary"),
                                         "speckle-reconstruct")
        self.status = styled(widgets.HTML(), "speckle-fth-status")
        self.plus_button = styled(widgets.Button(description="use as helicity +",
                                                 layout=widgets.Layout(width="150px")),
                                  "speckle-helicity-plus")
        self.minus_button = styled(widgets.Button(description="use as helicity −",
                                                  layout=widgets.Layout(width="150px")),
                                   "speckle-helicity-minus")
        self.difference = styled(widgets.Checkbox(
            value=False, indent=False, disabled=True,
            description="invert the difference + − f·(+ + −)"), "speckle-helicity-difference")
        self.helicity_info = widgets.HTML("<span style='color:#555'>XMCD: open each helicity's "
                                          "hologram and assign it.</span>")
        controls = widgets.VBox([
            widgets.HTML("<b>Centre</b> (row, col in pixels; sub-pixel allowed)"),
            self.center_row, self.center_col, self.find_button, self.apodization,
            self.reconstruct_button, self.status,
            widgets.HTML("<b style='display:block;margin-top:10px'>Helicity difference</b>"),
            widgets.HBox([self.plus_button, self.minus_button]), self.difference,
            self.helicity_info], layout=widgets.Layout(margin="0 0 0 12px", max_width="340px"))

        self.reconstruction_view = styled(ComplexImageView(
            max_regions=1, view="complex", scale="log",
            help_text="Drag around the object (one cross-term) to refocus it, or type its "
                      "region; without a region the whole image is refocused."),
            "speckle-reconstruction")
        self.rotate_button = styled(widgets.Button(
            description="Rotate phase to real", icon="rotate-right",
            layout=widgets.Layout(width="auto"), tooltip="take off the "
            "region's global phase, so that (magnetic) contrast sits in the real part"),
            "speckle-rotate-phase")
        self.save_button = styled(widgets.Button(description="Save reconstruction", icon="save",
                                                 disabled=True,
                                                 layout=widgets.Layout(width="auto")),
                                  "speckle-save-reconstruction")
        self.downloads = styled(widgets.HTML(), "speckle-download",
                                "speckle-reconstruction-download")
        self.save_message = MessageBox()

        self.children = [
            self.header("FTH reconstruction"),
            section("1. Data"), self.chooser, self.message,
            section("2. Hologram and inversion"),
            widgets.HBox([self.hologram_view, controls],
                         layout=widgets.Layout(flex_flow="row wrap")),
            section("3. Reconstruction and region"), self.reconstruction_view,
            widgets.HBox([self.rotate_button, self.save_button]), self.save_message,
            self.downloads,
            section("4. Refocus the region"), self.refocus, self.folder_template,
            self.page_query,
        ]
        self.find_button.on_click(lambda _b: self.find_center())
        self.reconstruct_button.on_click(lambda _b: self.reconstruct())
        self.plus_button.on_click(lambda _b: self.set_helicity("+"))
        self.minus_button.on_click(lambda _b: self.set_helicity("-"))
        self.difference.observe(lambda _c: self._use_difference(), "value")
        self.rotate_button.on_click(lambda _b: self.rotate_phase())
        self.save_button.on_click(lambda _b: self.save())

    # ---------------------------------------------------------------- the beamtime monitor
    def template(self):
        """The apodization and, once a region was refocused, the refocus settings and region,
        as an FTH template (the centre is found in every new hologram)."""
        from ...monitor.templates import Template

        return Template(kind="fth", fth={"apodization": float(self.apodization.value)},
                        refocus=refocus_of(self.refocus, self.reconstruction_view.region))

    def apply_template(self, template) -> None:
        self.apodization.value = template.options("fth").apodization

    def after_template_open(self, template) -> None:
        """The template's region refocused with its settings (when it has them)."""
        if not template.refocus:
            return
        options = template.options("refocus")
        apply_refocus(self.refocus, options)
        if options.region is not None:
            self.reconstruction_view.clear_regions()
            self.reconstruction_view.add_region(*options.region)
        self.refocus.run()

    # ---------------------------------------------------------------- data to reconstruction
    def _prepare(self, image, metadata, label):
        result = run_fth(image, FthOptions(apodization=self.apodization.value), source=label)
        return {"image": image, "metadata": metadata, "label": label, "result": result,
                "region": object_region(result)}

    def _show(self, prepared) -> None:
        self._work.invalidate()  # a reconstruction of the previous data is stale
        self._raw = prepared["image"]
        self.label = prepared["label"]
        self._quiet = True
        try:
            self.difference.value = False
        finally:
            self._quiet = False
        self.reconstruction_view.clear_regions()
        self._suggest_refocus(prepared["metadata"], self._raw.shape)
        self._show_reconstruction(prepared["result"], prepared["region"], self.label)

    def _show_reconstruction(self, result, region, what: str) -> None:
        self.hologram = hologram = result.hologram
        self.result = result
        self.phase = float(result.phase_rotation or 0.0)
        self.files = {}
        self.downloads.value = ""
        self.save_message.clear()
        self.center_row.value, self.center_col.value = (round(v, 3) for v in result.center)
        rows, cols = hologram.shape
        self.hologram_view.decades = log_decades(hologram)
        self.hologram_view.set_image(hologram, f"{what}: {rows} × {cols} pixels, log scale "
                                               f"over {self.hologram_view.decades:g} decades")
        keep = self.reconstruction_view.region
        center = result.center
        self.reconstruction_view.set_image(
            result.reconstruction, f"inverse FFT of {what}, centre ({center[0]:.2f}, "
                                   f"{center[1]:.2f}), apodization {result.options.apodization:g}")
        if region is not None and (keep is None or self.reconstruction_view.region is None):
            self.reconstruction_view.add_region(*region)
        v = result.verdict
        colour = {"good": "#1e7e34", "marginal": "#b45309", "bad": "#b00020"}[v.level]
        self.status.value = (f"<span class='speckle-fth-verdict-{v.level}' style='color:"
                             f"{colour}'>Reconstructed with centre ({center[0]:.2f}, "
                             f"{center[1]:.2f}). {html.escape(v.summary)}"
                             + (f". {html.escape(v.action)}" if v.action else "") + "</span>")
        self.save_button.disabled = False

    def _run(self, fn, title: str) -> None:
        """Run ``fn`` (returns what :meth:`_show_reconstruction` takes) in the background."""
        def failed(exc):
            self.status.value = ""
            self.message.error(exc, title=title)

        self.message.clear()
        self._work.start(fn, lambda args: self._show_reconstruction(*args), failed)

    def _invert(self, center) -> tuple:
        """Worker thread: :func:`run_fth` of the hologram in use (both helicities in
        difference mode, whose centre is found on their sum, as the CLI)."""
        options = FthOptions(center=center, apodization=float(self.apodization.value))
        if self.difference.value:
            (plus, a), (minus, b) = self._helicity["+"], self._helicity["-"]
            result = run_fth(plus, options, negative=minus, source=a)
            result.negative_source = b
            what = f"helicity difference {a} − {b}"
        elif self._raw is None:
            raise InvalidInputError("choose a hologram first: a beamline file, an upload or "
                                    "the demo data")
        else:
            result, what = run_fth(self._raw, options, source=self.label), self.label
        return result, object_region(result), what

    def reconstruct(self) -> None:
        """Invert the hologram with the typed centre and apodization (the Reconstruct button)."""
        center = (float(self.center_row.value), float(self.center_col.value))
        self._run(lambda: self._invert(center), "Cannot reconstruct:")

    def find_center(self) -> None:
        """Find the centre again (the Find centre button), then reconstruct."""
        self._run(lambda: self._invert(None), "Cannot find the centre:")

    # ---------------------------------------------------------------- helicity difference
    def set_helicity(self, which: str) -> None:
        """Remember the current hologram as helicity ``"+"`` or ``"-"``."""
        if self._raw is None:
            self.message.error("Open a hologram first, then assign it to a helicity.")
            return
        self._helicity[which] = (self._raw, self.label)
        names = {k: html.escape(v[1]) for k, v in self._helicity.items()}
        self.helicity_info.value = (f"+: <b>{names.get('+', '—')}</b>, "
                                    f"−: <b>{names.get('-', '—')}</b>")
        both = len(self._helicity) == 2
        self.difference.disabled = not both
        if both and self._helicity["+"][0].shape != self._helicity["-"][0].shape:
            self.difference.disabled = True
            self.message.error("The two helicities have different shapes; open holograms of "
                               "the same detector region.")
        elif self.difference.value:
            self._use_difference()

    def _use_difference(self) -> None:
        if not self._quiet:
            self.reconstruct()

    def rotate_phase(self) -> None:
        """Rotate the reconstruction's global phase (of the region) into the real part."""
        if self.result is None:
            self.message.error("Reconstruct a hologram first.")
            return
        view = self.reconstruction_view
        region = view.region
        if region is None:  # as the CLI: the strongest cross-term, not the whole frame
            terms = self.result.cross_terms
            region = terms[0].box if terms else None
        rotated, phi = rotate_phase_to_real(view.image, region)
        self.phase = (self.phase + phi + np.pi) % (2 * np.pi) - np.pi
        view.set_image(rotated, f"reconstruction with its global phase "
                                f"{np.degrees(self.phase):+.1f}° taken off")
        view.view.value = "real"

    # ---------------------------------------------------------------- refocus and files
    def _refocus_input(self) -> RefocusInput:
        view = self.reconstruction_view
        if view.image is None or self.result is None:
            raise InvalidInputError("reconstruct a hologram first: choose data in section 1")
        return RefocusInput(field=view.crop(), label=self.label or "fth", kind="fth",
                            image=view.image, region=view.region)

    def save(self) -> Path | None:
        """Write the reconstruction (HDF5 and PNG) as a result folder and offer the links."""
        view = self.reconstruction_view
        if view.image is None or self.result is None:
            self.save_message.error("Reconstruct a hologram first.")
            return None
        shown = replace(self.result, reconstruction=np.asarray(view.image),
                        phase_rotation=float(self.phase) or self.result.phase_rotation,
                        region=view.region)
        try:
            with new_result_folder(f"{self.label or 'fth'}-fth", self.results_dir) as (tmp,
                                                                                       final):
                write_imaging_result(shown, tmp / "result.h5")
                (tmp / "reconstruction.png").write_bytes(view.png())
                (tmp / "hologram.png").write_bytes(image_png(render_rgb(
                    self.hologram, "magnitude", "log")))
        except Exception as exc:  # noqa: BLE001 - shown in the page
            self.save_message.error(exc, title="The reconstruction was not saved:")
            return None
        self.save_message.clear()
        self.files = {"hdf5": final / "result.h5", "png": final / "reconstruction.png",
                      "hologram_png": final / "hologram.png"}
        entries = [(self.files["hdf5"], "reconstruction, HDF5"),
                   (self.files["png"], "reconstruction as shown, PNG"),
                   (self.files["hologram_png"], "hologram, PNG")]
        self.downloads.value = links_html(entries, final, self.base_url, self.server_root)
        return final

    def wait(self, timeout: float | None = 120) -> bool:
        """Wait until nothing runs in the background."""
        return super().wait(timeout) and self._work.wait(timeout)


def fth_dashboard(**kwargs) -> FthDashboard:
    """Return the FTH reconstruction dashboard (display it as a notebook cell's last value).

    Parameters
    ----------
    **kwargs
        Passed to :class:`FthDashboard`.

    Examples
    --------
    >>> from speckle.ui.imaging import fth_dashboard
    >>> fth_dashboard()  # doctest: +SKIP
    """
    return FthDashboard(**kwargs)
