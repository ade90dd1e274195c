"""ipywidgets components that the dashboards compose (Voila and JupyterLab).

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
    extension) and the demo datasets; opens the choice with :func:`speckle.io.open_dataset`.
:class:`ImageView`
    First frame or time average (linear/sqrt/log) on an ipympl canvas; rectangles drawn with
    the mouse or typed, or q-rings from the geometry.
:class:`AnalysisRunner`
    Analyze / Cancel, progress, options; runs :func:`speckle.xpcs.analysis.analyze` in a worker
    thread and reports failures in the page.
:class:`ResultsView`
    Verdict, g2 with fits, τ/β table, intensity, two-time map, download links.
:class:`DeviceBadge`
    What computes (the hub's ``SPECKLE_GPU_NAME`` or :func:`speckle.backend.device_description`).

The server's base URL (for uploads and download links) is :func:`speckle.ui.server.base_url`:
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
``speckle-roi-list``           list of rectangles; ``speckle-roi-delete``,
                               ``speckle-roi-clear``, ``speckle-roi-text`` (ROW0:ROW1,COL0:COL1)
                               and ``speckle-roi-add``
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
=============================  ===============================================================
"""

from .dashboard import XpcsDashboard, xpcs_dashboard
from .data_chooser import DataChooser
from .device import DeviceBadge
from .image_view import ImageView
from .results import ResultsView
from .runner import AnalysisRunner
from .uploader import Uploader

__all__ = ["AnalysisRunner", "DataChooser", "DeviceBadge", "ImageView", "ResultsView",
           "Uploader", "XpcsDashboard", "xpcs_dashboard"]
