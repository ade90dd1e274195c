"""ipywidgets components that the dashboards compose (Voila and JupyterLab).

The package shows the families: :mod:`speckle.ui.xpcs` (the XPCS quick check),
:mod:`speckle.ui.imaging` (FTH, propagation, CDI) and :mod:`speckle.ui.common` (what both
share). The names below are importable from ``speckle.ui`` itself.

This sub-package needs ipywidgets, ipympl and anywidget (the ``hub`` extra); the rest of
speckle never imports it, so the library stays usable without Jupyter.

A dashboard notebook is two lines::

    from speckle.ui import xpcs_dashboard
    xpcs_dashboard()

Components
----------
:class:`DataChooser`
    Beamline folders (``SPECKLE_DATA_DIRS``, read-only, newest first, readable formats only),
    an :class:`Uploader` (streaming, resumable upload through the ``speckle_jupyter`` server
    extension) and the demo datasets; opens the choice with :func:`speckle.io.open_dataset`,
    or a saved imaging result (``result.h5``) as a
    :class:`~speckle.ui.common.saved_result.SavedResult`
    where the dashboard takes them (the imaging ones).
:class:`ImageView`
    First frame or time average (linear/sqrt/log) on an ipympl canvas; rectangles drawn with
    the mouse or typed, or q-rings from the geometry.
:class:`~speckle.ui.common.region_editor.RegionEditor`
    The one region editor (the XPCS image and the imaging views): rectangles drawn with the
    mouse or typed (``ROW0:ROW1,COL0:COL1``, several separated by ``;``), listed, deleted; over
    the plain-Python :class:`~speckle.ui.common.regions.RegionList`.
:class:`RunPanel`
    Run / Cancel, progress bar, stage and message: runs ``work(progress, cancel)`` in a worker
    thread (states idle, running, done, cancelled, failed; failures in red with what to do).
    Every dashboard runs its long work with it.
:class:`AnalysisRunner`
    A :class:`RunPanel` (Analyze) and the XPCS options; runs
    :func:`speckle.xpcs.analysis.analyze`.
:class:`ResultsView`
    Verdict, g2 with fits, τ/β table, intensity, two-time map, download links
    (:func:`speckle.ui.common.downloads.links_html`, the same on every dashboard).
:class:`DeviceBadge`
    What computes (the hub's ``SPECKLE_GPU_NAME`` or :func:`speckle.backend.device_description`).

The server's base URL (for uploads and download links) is :func:`speckle.ui.common.server.base_url`:
``SPECKLE_BASE_URL``, else ``JUPYTERHUB_SERVICE_PREFIX`` (JupyterHub sets it for every user
server, and kernels inherit it), else ``/``. Results go to ``SPECKLE_RESULTS_DIR`` or
``~/speckle-results/<dataset>-<timestamp>/``; links are ``{base_url}files/<path relative to
SPECKLE_SERVER_ROOT or home>?download=1``.

Stable CSS classes (for browser tests and styling)
--------------------------------------------------
=============================  ===============================================================
class                          element
=============================  ===============================================================
``speckle-dashboard``          the whole XPCS dashboard (also ``speckle-xpcs``)
``speckle-device``             the "computing on: …" badge
``speckle-data-chooser``       the data section
``speckle-browse``             beamline folder list (a select; folders open on click)
``speckle-browse-open``        "Open" button for the selected beamline file
``speckle-listed``             when the folder was listed (listed again when the page is shown)
``speckle-upload``             the upload widget; inside: ``input.speckle-upload-input``,
                               ``progress.speckle-upload-progress``,
                               ``.speckle-upload-status``, ``.speckle-upload-error``,
                               ``button.speckle-upload-cancel``
``speckle-demo-choice``        one button per demo dataset (also ``speckle-demo-<name>``)
``speckle-dataset-info``       shape, dtype and metadata of the opened dataset
``speckle-image-view``         the image section; ``speckle-image`` is the ipympl canvas
``speckle-image-kind``         first frame / time average toggle
``speckle-image-scale``        linear / sqrt / log toggle
``speckle-region-mode``        rectangles / q-rings toggle
``speckle-region-editor``      the region editor (also on the imaging views); inside:
                               ``speckle-region-info``, ``speckle-region-list`` (the
                               rectangles), ``speckle-region-delete``, ``speckle-region-clear``,
                               ``speckle-region-text`` (ROW0:ROW1,COL0:COL1) and
                               ``speckle-region-set`` (Add)
``speckle-qrings``             the geometry and q-ring fields
``speckle-runner``             the analysis section
``speckle-analyze``            Analyze button
``speckle-cancel``             Cancel button
``speckle-auto``               "re-analyse when the regions change" checkbox
``speckle-progress``           progress bar; ``speckle-stage`` the text beside it
``speckle-results``            the results section
``speckle-verdict``            the verdict (plus ``speckle-verdict-good``, ``-marginal``,
                               ``-bad``)
``speckle-g2-plot``            g2 with fits (an image)
``speckle-fit-table``          τ/β table (rows ``tr.speckle-fit-row``)
``speckle-intensity-plot``     intensity vs time (an image)
``speckle-twotime-bin``        bin chooser of the two-time map; ``speckle-twotime-plot``
``speckle-download``           download links (``a.speckle-download-link``) and the folder
``speckle-error``              any error message in the page (red); other messages carry
                               ``speckle-message``
``speckle-kernel-lost``        the hub's page template: a banner shown when the page's kernel
                               is gone (died, culled, server stopped), with
                               ``speckle-kernel-lost-reload``
``speckle-run-panel``          every dashboard's run panel (:class:`RunPanel`; XPCS, refocus,
                               CDI); inside: ``speckle-run-button``, ``speckle-run-cancel``,
                               ``speckle-run-progress``, ``speckle-run-stage`` (besides each
                               dashboard's own classes for them)
=============================  ===============================================================

Imaging dashboards (:mod:`speckle.ui.imaging`)
----------------------------------------------
``from speckle.ui.imaging import fth_dashboard`` (or ``propagation_dashboard``,
``cdi_dashboard``), then call it. The CDI dashboard's own classes (``speckle-cdi-*``,
``speckle-autocorrelation``, ``speckle-prtf-plot``) are listed in :mod:`speckle.ui.imaging.cdi`.
They reuse the data chooser's classes above (demo buttons ``speckle-demo-fth`` and
``speckle-demo-cdi``), ``speckle-device``, ``speckle-download`` / ``a.speckle-download-link``
and ``speckle-error``; their own:

========================================  ========================================================
class                                     element
========================================  ========================================================
``speckle-dashboard``                     also on every imaging dashboard
``speckle-fth``                           the whole FTH reconstruction dashboard
``speckle-propagation``                   the whole propagation (refocus) dashboard
``speckle-complex-image``                 a complex image view (:class:`ComplexImageView`); inside:
                                          ``speckle-complex-canvas`` (the ipympl canvas),
                                          ``speckle-complex-view`` (complex / magnitude / phase /
                                          real), ``speckle-complex-scale`` (linear / sqrt / log),
                                          and the region editor (``speckle-region-editor``, as
                                          above; ``speckle-region-set`` says Set when the view
                                          takes one region)
``speckle-hologram``                      FTH: the hologram's complex image view
``speckle-fth-center-row``, ``-col``      FTH: the centre fields (pixels)
``speckle-find-center``                   FTH: "Find centre" button
``speckle-fth-apodization``               FTH: the hologram's apodization slider
``speckle-reconstruct``                   FTH: "Reconstruct" button; ``speckle-fth-status`` beside
``speckle-helicity-plus``, ``-minus``     FTH: assign the current hologram to a helicity
``speckle-helicity-difference``           FTH: "invert the difference" checkbox
``speckle-reconstruction``                FTH: the reconstruction's complex image view
``speckle-rotate-phase``                  FTH: "Rotate phase to real" button
``speckle-save-reconstruction``           FTH: "Save reconstruction"; its links in
                                          ``speckle-reconstruction-download``
``speckle-input-mode``                    propagation: hologram / amplitude / intensity
``speckle-field``                         propagation: the field's complex image view
``speckle-refocus``                       the refocus panel (:class:`RefocusPanel`); fields
                                          ``speckle-refocus-energy`` (eV), ``-pitch`` (nm),
                                          ``-from``, ``-to`` (µm), ``-steps``, ``-apodization``,
                                          ``-metric``, ``-extremum``, ``-method``
``speckle-refocus-run``                   "Refocus" button; ``speckle-refocus-cancel``
``speckle-refocus-progress``              progress bar; ``speckle-refocus-stage`` the text beside
``speckle-refocus-hint``                  what to do, shown until a sweep ran;
                                          ``speckle-refocus-results`` (plot, frame, downloads)
                                          is hidden until then
``speckle-sharpness-plot``                sharpness vs distance (ipympl canvas; drag the red
                                          marker line with the mouse)
``speckle-focus-slider``                  slider bound to the marker; ``speckle-focus-distance``
                                          the marker's distance; ``speckle-focus-best`` the best
                                          distance of each metric
``speckle-focus-frame``                   the field at the marker (an image)
``speckle-gradient-toggle``               field / gradient; ``speckle-focus-scale``;
                                          ``speckle-focus-caption`` under the frame
``speckle-save-frame``                    "Save this frame" (adds its PNG to the downloads)
========================================  ========================================================
"""

from .common._common import RunPanel
from .common.data_chooser import DataChooser
from .common.device import DeviceBadge
from .common.uploader import Uploader
from .xpcs import AnalysisRunner, ImageView, ResultsView, XpcsDashboard, xpcs_dashboard

#: Imaging names, imported on first use: the XPCS dashboard's kernel does not pay for phasing,
#: alignment and scipy.fft (a quarter of a second of every dashboard start on 2 cores).
_IMAGING = ("CdiDashboard", "ComplexImageView", "FthDashboard", "PropagationDashboard",
            "RefocusPanel", "cdi_dashboard", "fth_dashboard", "propagation_dashboard")


def __getattr__(name):
    if name in _IMAGING:
        from . import imaging
        return getattr(imaging, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AnalysisRunner", "DataChooser", "DeviceBadge", "ImageView", "ResultsView",
           "RunPanel", "Uploader", "XpcsDashboard", "xpcs_dashboard",
           "CdiDashboard", "ComplexImageView", "FthDashboard", "PropagationDashboard",
           "RefocusPanel", "cdi_dashboard", "fth_dashboard", "propagation_dashboard"]


def __dir__():
    return sorted(set(globals()) | set(_IMAGING))
