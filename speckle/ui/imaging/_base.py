"""What the imaging dashboards share: choosing data, reading one image, refocusing, waiting."""

from __future__ import annotations

import numpy as np

from ...errors import InvalidInputError
from ...imaging.propagation import wavelength_from_energy
from ...io.images import read_image
from ..common._common import MessageBox, Tasks
from ..common.base import Dashboard, section
from ..common.beamtime import FolderTemplatePanel, PageQuery, dataset_folder, read_monitor_result
from ..common.saved_result import SavedResult
from .refocus import RefocusPanel

__all__ = ["ImagingDashboard", "object_pixel_size", "section"]


def object_pixel_size(metadata, shape) -> float | None:
    """Pixel size (m) of the object plane of a far-field pattern: ``λ z / (N p)``.

    Parameters
    ----------
    metadata : Metadata
        Needs the energy, the sample–detector distance and the detector pixel size.
    shape : (rows, cols)

    Returns
    -------
    float or None
        Along the rows; None when the metadata lack one of the three.
    """
    if not (metadata.energy and metadata.distance and metadata.pixel_size):
        return None
    wavelength = wavelength_from_energy(metadata.energy)
    return wavelength * metadata.distance / (shape[0] * metadata.pixel_size[0])


class ImagingDashboard(Dashboard):
    """Data chooser, a page-level message, a refocus panel and a background loader.

    Subclasses implement :meth:`_prepare` (worker thread: the opened dataset to what is shown)
    and :meth:`_show` (shows it), and give the refocus panel its input with
    :meth:`_refocus_input`. A saved imaging result chosen in the data chooser goes to
    :meth:`_prepare_saved` instead (default: the real image named in :attr:`saved_image_names`
    goes through :meth:`_prepare`).

    Parameters
    ----------
    data_dirs, upload_dir, results_dir, base_url, server_root : optional
        See :class:`~speckle.ui.common.base.Dashboard`.
    demos : sequence of str
        Demo datasets offered (names of :data:`speckle.demo.DEMOS`).
    """

    #: The arrays of a saved result that this dashboard takes as its input image.
    saved_image_names: tuple[str, ...] = ()

    def __init__(self, *, demos=("fth", "cdi"), **kwargs):
        super().__init__(demos=demos, saved_results=True, **kwargs)
        self.message = MessageBox()
        self.refocus = RefocusPanel(self._refocus_input, results_dir=self.results_dir,
                                    base_url=self.base_url, server_root=self.server_root)
        self._tasks = Tasks("imaging")
        self.metadata = None
        self.chooser.observe(self._on_dataset, "dataset")
        # the beamtime monitor: this page's settings as a folder's template, and a Beamtime
        # result opened here (?result=...) with its template (subclasses place both widgets)
        self.folder_template = FolderTemplatePanel(self._folder_template)
        self.page_query = PageQuery()
        self.page_query.observe(self._on_query, "query")
        self._pending_template = None

    # ---------------------------------------------------------------- the beamtime monitor
    def template(self):
        """This page's settings as a :class:`~speckle.monitor.templates.Template`."""
        raise NotImplementedError

    def apply_template(self, template) -> None:
        """Show a template's settings in the fields, before its dataset is read."""
        raise NotImplementedError

    def after_template_open(self, template) -> None:
        """What follows once a Beamtime result's dataset is shown (e.g. refocus, run)."""

    def _folder_template(self) -> tuple[str, dict]:
        return dataset_folder(self.chooser), self.template().to_dict()

    def _on_query(self, _change) -> None:
        result = self.page_query.param("result")
        if not result:
            return
        try:
            path, template = read_monitor_result(result, data_roots=self.chooser.roots)
            self.apply_template(template)
        except InvalidInputError as exc:
            self.chooser.message.error(exc, title="Cannot open the Beamtime result:")
            return
        self._pending_template = (str(path), template)
        self.chooser.open_path(path)

    # ---------------------------------------------------------------- data
    def _on_dataset(self, change) -> None:
        ds = change["new"]
        self.refocus.clear()
        self.message.clear()
        if ds is None:
            return
        label = self.chooser.label
        self.message.show(f"Reading {label}…", "info")

        def work():
            if isinstance(ds, SavedResult):
                return self._prepare_saved(ds, label)
            image, metadata = read_image(ds)
            return self._prepare(image, metadata, label)

        def done(prepared):
            self.message.clear()
            self._show(prepared)
            pending, self._pending_template = self._pending_template, None
            if pending is not None and pending[0] == str(getattr(ds, "source", "")):
                self.after_template_open(pending[1])

        def failed(exc):
            self.message.error(exc, title=f"Cannot use {label}:")

        self._tasks.start(work, done, failed)

    def _prepare(self, image: np.ndarray, metadata, label: str):
        """Worker thread: compute what :meth:`_show` shows from the image read."""
        raise NotImplementedError

    def _prepare_saved(self, saved: SavedResult, label: str):
        """Worker thread: what :meth:`_show` shows of a saved result (its input image)."""
        for name in self.saved_image_names:
            image = saved.arrays.get(name)
            if image is not None and image.ndim == 2 and not np.iscomplexobj(image):
                return self._prepare(np.asarray(image, dtype=np.float64), saved.metadata, label)
        wanted = " or ".join(self.saved_image_names) or "input image"
        raise InvalidInputError(f"this saved {saved.kind.upper()} result holds no {wanted}; "
                                "open it in the propagation dashboard to refocus its image")

    def _show(self, prepared) -> None:
        raise NotImplementedError

    def _refocus_input(self):
        raise NotImplementedError

    def _suggest_refocus(self, metadata, shape) -> None:
        """Energy and object-plane pitch from the metadata, where the file gives them."""
        self.metadata = metadata
        self.refocus.suggest(energy=metadata.energy, pitch=object_pixel_size(metadata, shape))

    # ---------------------------------------------------------------- for scripts and tests
    def wait(self, timeout: float | None = 120) -> bool:
        """Wait until nothing runs in the background (opening, reading, refocusing)."""
        return (self.chooser.wait(timeout) and self._tasks.wait(timeout)
                and self.refocus.wait(timeout))
