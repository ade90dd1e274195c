"""Choosing the data: beamline folders, an upload from the laptop, or a demo dataset.

The three ways sit side by side (the original server's three tiles). Whichever is used, the
file is opened with :func:`speckle.io.open_dataset` in a background thread (the readers
validate it first), and the opened :class:`~speckle.io.dataset.Dataset` appears in the trait
:attr:`DataChooser.dataset`, which the dashboard observes. A saved imaging result
(``result.h5``) opens as a :class:`~speckle.ui.common.saved_result.SavedResult` where the dashboard
asks for them (``saved_results=True``), and is refused with a pointer elsewhere.
"""

from __future__ import annotations

import html
import time
from pathlib import Path, PurePosixPath

import ipywidgets as widgets
import traitlets

from ... import demo as demo_data
from ...errors import InvalidInputError
from ...io.dataset import Dataset
from ...io.browse import entry_path, list_entries, safe_join
from ...io.images import image_result_kind
from ...io.open import open_dataset
from ._common import MessageBox, Tasks, styled
from .saved_result import SavedResult
from .server import data_dirs as default_data_dirs
from .server import upload_dir as default_upload_dir
from .shown import ShownSignal
from .uploader import Uploader

__all__ = ["DataChooser", "describe_dataset"]

_DEMO_TITLES = {"xpcs": "XPCS demo: 100 real frames, 256×256 (scikit-beam examples)",
                "fth": "FTH demo: hologram, 512×512 (ALS 12.0.2)",
                "cdi": "CDI demo: diffraction pattern, 512×512 (ALS 12.0.2)"}
_UP = "\u2b11 .. (up one folder)"
#: A listing older than this (seconds) is made again when the page is displayed.
RELIST_AFTER_S = 2.0
_TIFF_HERE = "\u25a3 this folder, as a TIFF series"


def _demo_hints(name: str) -> dict | None:
    """Region suggestions for a demo: the q-rings over its speckle (speckle.demo.DEMO_RINGS)."""
    from ...demo import DEMO_RINGS

    rings = DEMO_RINGS.get(name)
    if rings is None:
        return None
    return {"rings": {"q_min": rings["q_min"], "q_width": rings["q_width"], "q_step": 0.0,
                      "n_rings": rings["n_rings"]}}


def _fmt_bytes(n) -> str:
    if n is None:
        return ""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _dataset_rows(ds: Dataset) -> list[tuple[str, str]]:
    """The description's rows that fit the data: frame time for a stack only, and so on."""
    md = ds.metadata
    n, rows, cols = ds.shape
    if isinstance(ds, SavedResult):
        arrays = ", ".join(f"{k} {' × '.join(map(str, a.shape))}" for k, a in ds.arrays.items()
                           if a.ndim == 2)
        items = [("saved result", f"{ds.kind.upper()}, showing {ds.name}: {rows} × {cols} "
                                  f"pixels, {ds.dtype}"),
                 ("arrays", arrays)]
        if ds.region is not None:
            r0, r1, c0, c1 = ds.region
            items.append(("region", f"rows {r0}:{r1}, cols {c0}:{c1}"))
        if md.energy is not None:
            items.append(("energy", f"{md.energy:.5g} eV"))
        if ds.pitch is not None:
            items.append(("pixel size (sample)", f"{ds.pitch * 1e9:.4g} nm"))
        return items
    if n > 1:
        items = [("frames", f"{n} of {rows} × {cols} pixels, {ds.dtype} ({ds.format})"),
                 ("frame time", "unknown (lags are shown in frames)" if md.frame_time is None
                  else f"{md.frame_time * 1e3:.5g} ms")]
    else:
        items = [("image", f"{rows} × {cols} pixels, {ds.dtype} ({ds.format})")]
    items += [
        ("energy", "unknown" if md.energy is None else f"{md.energy / 1e3:.5g} keV"),
        ("distance", "unknown" if md.distance is None else f"{md.distance:.4g} m"),
        ("pixel size", "unknown" if md.pixel_size is None
         else " × ".join(f"{v * 1e6:.4g}" for v in md.pixel_size) + " µm"),
        ("beam centre", "unknown" if md.beam_center is None
         else f"({md.beam_center[0]:.1f}, {md.beam_center[1]:.1f}) px (row, column)"),
    ]
    return items


def describe_dataset(ds: Dataset, label: str | None = None) -> str:
    """HTML describing a dataset: its shape, dtype and format and the metadata that fit it.

    A stack of frames shows its frame time; a single image does not; a saved imaging result
    shows its kind, its arrays and the region, energy and pixel size it was made with.
    """
    rows_html = "".join(f"<tr><td style='padding-right:12px;color:#555'>{k}</td>"
                        f"<td>{html.escape(v)}</td></tr>" for k, v in _dataset_rows(ds))
    name = html.escape(label or Path(str(ds.source)).name)
    return (f"<div><b>Dataset:</b> {name}<br><span style='color:#555;font-size:90%'>"
            f"{html.escape(str(ds.source))}</span><table style='margin-top:4px'>{rows_html}"
            "</table></div>")


def _card(title: str, *children, css: str) -> widgets.VBox:
    head = widgets.HTML(f"<b>{html.escape(title)}</b>")
    box = widgets.VBox([head, *children], layout=widgets.Layout(
        border="1px solid #ccc", padding="8px", margin="0 8px 8px 0", flex="1 1 300px",
        min_width="280px"))
    return styled(box, "speckle-card", css)


class DataChooser(widgets.VBox):
    """Three ways to choose a dataset, and what the chosen one is.

    Parameters
    ----------
    data_dirs : list of path-like, optional
        Beamline folders (default ``SPECKLE_DATA_DIRS``).
    upload_dir : path-like, optional
        Where the server extension places uploads (default ``SPECKLE_UPLOAD_DIR``).
    base_url : str, optional
        The user server's base URL, for the uploader.
    demos : sequence of str, optional
        Names of :data:`speckle.demo.DEMOS` to offer (default all).
    saved_results : bool
        Open saved imaging results (``result.h5`` of :func:`speckle.io.images.write_image_result`)
        as :class:`~speckle.ui.common.saved_result.SavedResult`; when False they are refused with a
        message that says where they open.

    Attributes
    ----------
    dataset : Dataset or None
        The opened dataset (a trait: observe it). Replaced datasets are passed to
        :attr:`release` (default: closed at once).
    label : str
        A short name of the chosen dataset (for result folder names).
    state : str
        ``"empty"``, ``"opening"``, ``"ready"`` or ``"failed"``.
    hints : dict
        Suggestions that came with the dataset (the demos' published q-rings, under
        ``"rings"``), read by the dashboard when :attr:`dataset` changes.

    Notes
    -----
    CSS classes: ``speckle-data-chooser`` (the whole), ``speckle-browse`` (the folder list),
    ``speckle-browse-open``, ``speckle-upload``, ``speckle-demo-choice`` (one button per demo),
    ``speckle-dataset-info`` and ``speckle-error``.
    """

    dataset = traitlets.Instance(Dataset, allow_none=True)
    state = traitlets.Unicode("empty")

    def __init__(self, data_dirs=None, upload_dir=None, base_url: str | None = None,
                 demos=None, saved_results: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.add_class("speckle-data-chooser")
        self.saved_results = saved_results
        self.label = ""
        self.hints = {}
        self.release = lambda ds: ds.close()
        self._tasks = Tasks("open")
        self._roots = [Path(p) for p in (default_data_dirs() if data_dirs is None else data_dirs)]
        self._upload_dir = Path(upload_dir) if upload_dir is not None else default_upload_dir()
        labels = [f"{p.name or p} ({p})" for p in self._roots]
        if self._upload_dir.is_dir() and self._upload_dir not in self._roots:
            # earlier uploads can be opened again without uploading them twice
            self._roots.append(self._upload_dir)
            labels.append(f"my uploads ({self._upload_dir})")
        self._rel = ""
        self._entries = {}
        self.message = MessageBox()
        self.info = styled(widgets.HTML(), "speckle-dataset-info")

        self.root_choice = widgets.Dropdown(
            options=[(label, i) for i, label in enumerate(labels)],
            description="folder", layout=widgets.Layout(width="100%"))
        self.where = widgets.HTML()
        self.listing = styled(widgets.Select(options=[], rows=9,
                                             layout=widgets.Layout(width="100%")),
                              "speckle-browse")
        self.open_button = styled(widgets.Button(description="Open", icon="folder-open",
                                                 button_style="primary", disabled=True),
                                  "speckle-browse-open")
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        if self._roots:
            browse = [self.root_choice, self.where, self.listing,
                      widgets.HBox([self.open_button, self.refresh_button])]
        else:
            browse = [widgets.HTML("<i>No beamline data folders are configured on this hub "
                                   "(SPECKLE_DATA_DIRS), and nothing was uploaded yet.</i>")]
        self.uploader = Uploader(base_url=base_url)
        names = list(demo_data.DEMOS) if demos is None else list(demos)
        self.demo_buttons = []
        for name in names:
            button = styled(widgets.Button(description=_DEMO_TITLES.get(name, f"demo: {name}"),
                                           tooltip=f"open the {name} demo dataset",
                                           layout=widgets.Layout(width="auto")),
                            "speckle-demo-choice", f"speckle-demo-{name}")
            button.on_click(lambda _b, name=name: self.open_demo(name))
            self.demo_buttons.append(button)

        cards = widgets.Box([
            _card("Beamline data and your uploads (newest first)", *browse,
                  css="speckle-source-browse"),
            _card("Upload from your computer", self.uploader, css="speckle-source-upload"),
            _card("Demo data", *self.demo_buttons, css="speckle-source-demo"),
        ], layout=widgets.Layout(display="flex", flex_flow="row wrap", width="100%"))
        # the page may be shown long after this listing (a preheated dashboard): list again then
        self.shown = ShownSignal()
        self.shown.on_shown(self._on_shown)
        self._listed_at = 0.0
        self.children = [cards, self.message, self.info, self.shown]

        self.root_choice.observe(lambda _c: self.browse(""), "value")
        self.listing.observe(self._on_pick, "value")
        self.open_button.on_click(lambda _b: self.open_selected())
        self.refresh_button.on_click(lambda _b: self.browse(self._rel))
        self.uploader.observe(self._on_upload, "path")
        if self._roots:
            self.browse("")

    # ---------------------------------------------------------------- beamline folders
    @property
    def roots(self) -> list[Path]:
        """The folders this chooser opens data from (beamline folders, then the uploads)."""
        return list(self._roots)

    @property
    def root(self) -> Path | None:
        """The beamline folder being browsed."""
        return self._roots[self.root_choice.value] if self._roots else None

    def browse(self, rel: str = "") -> None:
        """Show the folder ``rel`` of the current beamline root."""
        if self.root is None:
            return
        try:
            entries = list_entries(self.root, rel)
        except Exception as exc:  # noqa: BLE001 - shown in the page
            self.message.error(exc, title="Cannot list this folder:")
            return
        self._rel = rel.strip("/")
        options = []
        self._entries = {}
        if self._rel:
            options.append((_UP, ".."))
        if any(not e.is_dir and e.format == "tiff" for e in entries):
            options.append((_TIFF_HERE, "."))
        for e in entries:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.mtime)) if e.mtime else ""
            if e.is_dir:
                text = f"\U0001f4c1 {e.name}/   {when}"
            else:
                text = f"{e.name}   {_fmt_bytes(e.size)}  {e.format or ''}  {when}"
            key = entry_path(self._rel, e)
            self._entries[key] = e
            options.append((text, key))
        self.listing.unobserve(self._on_pick, "value")
        self.listing.options = options
        self.listing.value = None
        self.listing.observe(self._on_pick, "value")
        self.open_button.disabled = True
        self._listed_at = time.time()
        self.where.value = (f"<span style='color:#555'>{html.escape(str(self.root))}/"
                            f"<b>{html.escape(self._rel)}</b></span> <span class='speckle-listed' "
                            f"style='color:#888'>listed at "
                            f"{time.strftime('%H:%M:%S', time.localtime(self._listed_at))}</span>")

    def _on_shown(self) -> None:
        if (self.root is not None and self.listing.value is None
                and time.time() - self._listed_at > RELIST_AFTER_S):
            self.browse(self._rel)

    def _on_pick(self, change) -> None:
        value = change["new"]
        if value is None:
            return
        if value == "..":
            parent = str(PurePosixPath(self._rel).parent)
            self.browse("" if parent == "." else parent)
            return
        entry = self._entries.get(value)
        if entry is not None and entry.is_dir:
            self.browse(value)
            return
        self.open_button.disabled = False

    def open_selected(self) -> None:
        """Open the file (or the folder as a TIFF series) selected in the folder list."""
        value = self.listing.value
        if value is None or self.root is None:
            return
        rel = self._rel if value == "." else value
        try:
            path = safe_join(self.root, rel)
        except InvalidInputError as exc:
            self.message.error(exc)
            return
        self.open_path(path, label=Path(rel).name or self.root.name)

    # ---------------------------------------------------------------- upload and demos
    def _on_upload(self, change) -> None:
        path = change["new"]
        if not path:
            return
        target = Path(path)
        if not target.is_absolute():
            target = self._upload_dir / target
        try:
            inside = target.resolve().is_relative_to(self._upload_dir.resolve())
        except OSError:
            inside = False
        if not inside:
            self.message.error(f"The server placed the upload at {target}, outside your upload "
                               f"folder {self._upload_dir}; it was not opened. Ask the hub's "
                               "administrator to check SPECKLE_UPLOAD_DIR.")
            return
        self.open_path(target, label=self.uploader.name or target.name)

    def open_demo(self, name: str = "xpcs") -> None:
        """Open a bundled demo dataset with its published geometry."""
        self.open_path(demo_data.demo_path(name), metadata=demo_data.demo_metadata(name),
                       label=f"demo-{name}", hints=_demo_hints(name))

    # ---------------------------------------------------------------- opening
    def open_path(self, path, *, metadata: dict | None = None, label: str | None = None,
                  hints: dict | None = None) -> None:
        """Open ``path`` in the background; the result appears in :attr:`dataset`.

        Errors (unreadable, unsupported or damaged files) show as a message in the page.
        """
        name = label or Path(str(path)).name
        self.state = "opening"
        self.message.show(f"Opening {name}…", "info")

        def done(ds):
            self.message.clear()
            self.info.value = describe_dataset(ds, name)
            self.label = name
            self.hints = dict(hints or {})
            old = self.dataset
            self.dataset = ds
            self.state = "ready"
            if old is not None and old is not ds:
                self.release(old)

        def failed(exc):
            self.state = "failed"
            self.message.error(exc, title=f"Cannot open {name}:")

        self._tasks.start(lambda: self._open(path, name, metadata), done, failed,
                          on_stale=lambda ds: ds.close())

    def _open(self, path, name: str, metadata: dict | None) -> Dataset:
        """Worker thread: a saved imaging result, or whatever :func:`open_dataset` reads."""
        kind = image_result_kind(path)
        if kind is None:
            return open_dataset(path, metadata=metadata)
        if not self.saved_results:
            raise InvalidInputError(
                f"{name} is a saved {kind.upper()} result of an imaging dashboard, not detector "
                "frames; open it in the propagation or CDI dashboard to refocus it")
        return SavedResult(path)

    def wait(self, timeout: float | None = 60) -> bool:
        """Wait until no dataset is being opened (for scripts and tests)."""
        return self._tasks.wait(timeout)
