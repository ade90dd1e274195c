"""The dashboards and the beamtime monitor: a result opened from the Beamtime page, and a
folder's template saved from a dashboard.

- :class:`PageQuery` reads the page's query string in the browser (a Voila kernel that was
  started before the page, a preheated one, never sees the request): the Beamtime page's
  *Open* link ends in ``?result=<result folder>``.
- :func:`read_monitor_result` checks such a result folder (inside the monitor's results folder,
  written by the monitor) and returns the dataset and the template that made it.
- :func:`xpcs_recipe_of` and :func:`apply_xpcs_recipe` turn the XPCS dashboard's regions and
  options into an :class:`~speckle.xpcs.recipe.XpcsRecipe` and back.
- :class:`FolderTemplatePanel` is the "Use for new files in this folder" button: it saves the
  dashboard's current parameters as the template of the dataset's folder, through the monitor's
  API (authenticated with the user server's hub token), so the monitor analyses every new file
  there the same way.
"""

from __future__ import annotations

import html
import json
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import anywidget
import ipywidgets as widgets
import traitlets

from ...errors import InvalidInputError
from ...xpcs.recipe import PartitionSpec, XpcsRecipe
from ._common import MessageBox, styled
from .server import monitor_results, monitor_url

__all__ = ["FolderTemplatePanel", "PageQuery", "apply_refocus", "apply_xpcs_recipe",
           "dataset_folder", "read_monitor_result", "refocus_of", "save_folder_template",
           "xpcs_recipe_of"]

ANGSTROM = 1e-10
MICRON = 1e-6


class PageQuery(anywidget.AnyWidget):
    """The browser page's query string (``?result=...``), sent once when the widget shows.

    Attributes
    ----------
    query : str
        ``window.location.search`` of the page ("" before the widget is shown).
    """

    _esm = """
    export default {
      render({ model, el }) {
        el.style.display = "none";
        if (model.get("query") !== window.location.search) {
          model.set("query", window.location.search);
          model.save_changes();
        }
      }
    };
    """
    query = traitlets.Unicode("").tag(sync=True)

    def param(self, name: str) -> str | None:
        """One parameter of the query string, or None."""
        values = urllib.parse.parse_qs(self.query.lstrip("?")).get(name)
        return values[0] if values else None


def _inside(path: Path, folder: Path) -> bool:
    path, folder = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return path == folder or folder in path.parents


def read_monitor_result(result_dir, *, results_root=None, data_roots=()) -> tuple[Path, object]:
    """The dataset and the template of a result folder the monitor wrote.

    Parameters
    ----------
    result_dir : path-like
        A result folder (``summary.json`` and ``template.yaml`` in it).
    results_root : path-like, optional
        The monitor's results folder (default
        :func:`~speckle.ui.common.server.monitor_results`); the
        result must lie inside it.
    data_roots : sequence of path-like
        The data folders this server opens; the dataset must lie inside one.

    Returns
    -------
    (pathlib.Path, Template)

    Raises
    ------
    InvalidInputError
        With what is wrong, in words.
    """
    from ...monitor.templates import load_template

    root = Path(results_root) if results_root is not None else monitor_results()
    folder = Path(str(result_dir))
    if root is None or not _inside(folder, root):
        raise InvalidInputError(f"{folder} is not a result of this hub's beamtime monitor")
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise InvalidInputError(f"{folder}: no readable result there (it may have been replaced "
                                "by a newer analysis: reload the Beamtime page)") from None
    dataset = Path(str(summary.get("path", "")))
    if not any(_inside(dataset, Path(r)) for r in data_roots):
        raise InvalidInputError(f"{dataset} is not in a data folder this server opens")
    if not dataset.exists():
        raise InvalidInputError(f"{dataset} is no longer there")
    return dataset, load_template(folder / "template.yaml")


def dataset_folder(chooser) -> str:
    """The beamline folder of the dataset a data chooser holds (a template's folder).

    Raises
    ------
    InvalidInputError
        With no dataset, or one that is not in a beamline folder (an upload, the demo data).
    """
    from .server import data_dirs

    ds = chooser.dataset
    if ds is None:
        raise InvalidInputError("choose a dataset from a beamline folder first")
    folder = Path(str(getattr(ds, "source", ""))).parent
    if not any(folder == root or root in folder.parents for root in data_dirs()):
        raise InvalidInputError("the monitor watches the beamline folders: choose a dataset "
                                "from one (uploads and the demo data are not watched)")
    return str(folder)


# ------------------------------------------------------------------------------ refocusing
UM, NM = 1e-6, 1e-9


def refocus_of(panel, region) -> dict:
    """A refocus panel's settings as a template's ``refocus`` section, when it has refocused
    (energy, pixel size, distance range, metric, method, and the region); else ``{}``."""
    if panel.sweep is None:
        return {}
    p = panel.parameters()
    d = p["distances"]
    return {"energy": p["energy"], "pixel_size": p["pixel_size"],
            "distances": [float(d[0]), float(d[-1]), int(len(d))], "metric": p["metric"],
            "method": p["method"], "region": None if region is None else [int(v) for v in region]}


def apply_refocus(panel, options) -> None:
    """Show a template's refocus settings (``RefocusOptions``) in a refocus panel."""
    px = options.pixel_size
    panel.set_parameters(energy=options.energy,
                         pitch=px[0] if isinstance(px, tuple) else px,
                         z_range=(options.distances[0], options.distances[1]))
    panel.steps.value = int(options.distances[2])
    panel.metric.value = options.metric
    panel.method.value = options.method


# ------------------------------------------------------------------------------ XPCS regions
def xpcs_recipe_of(image, runner) -> XpcsRecipe:
    """The XPCS dashboard's regions and options as a recipe.

    The regions (rectangles or q-rings with their geometry), the fit model, two-time and frame
    normalisation, and a typed frame time. Excluded frames are left out: they belong to one run.

    Raises
    ------
    InvalidInputError
        When there are no regions yet, or the q-rings lack their geometry.
    """
    options = runner.options()
    options = type(options)(**{**options.__dict__, "exclude_frames": ()})
    metadata = dict(runner.metadata_overrides())
    if image.mode.value == "rectangles":
        if not image.regions:
            raise InvalidInputError("draw at least one region first (or choose q-rings)")
        spec = PartitionSpec(kind="rois", rois=tuple(image.regions))  # regions: the ROIs
    else:
        geometry = image.geometry()  # refuses missing values with what to type
        metadata.update(energy=geometry.energy, distance=geometry.distance,
                        pixel_size=tuple(geometry.pixel_size), beam_center=tuple(geometry.beam_center))
        step = image.q_step.value or None
        spec = PartitionSpec(kind="q_rings", n_rings=int(image.n_rings.value),
                             q_min=image.q_min.value / ANGSTROM, q_width=image.q_width.value / ANGSTROM,
                             q_step=None if step is None else step / ANGSTROM)
    return XpcsRecipe(partition=spec, metadata=metadata, options=options)


def rings_hint(recipe: XpcsRecipe) -> dict | None:
    """The q-rings of a recipe as the image view takes them (1/Å), or None."""
    p = recipe.partition
    if p.kind not in ("q_rings", "auto") or p.q_min is None:
        return None
    return {"q_min": p.q_min * ANGSTROM, "q_width": p.q_width * ANGSTROM,
            "q_step": (p.q_step or 0.0) * ANGSTROM, "n_rings": p.n_rings}


def apply_xpcs_recipe(recipe: XpcsRecipe, image, runner, frame_shape) -> None:
    """Show a recipe's regions and options in the dashboard (its dataset already shown).

    Raises
    ------
    InvalidInputError
        For a partition the dashboard cannot show (an APS q-map file).
    """
    p = recipe.partition
    if p.kind == "qmap":
        raise InvalidInputError(f"this folder's template uses the q-map file {p.qmap}, which the "
                                "dashboard cannot show: its result is on the Beamtime page")
    o = recipe.options
    runner.model.value = o.fit_model
    runner.normalize.value = bool(o.normalize_frames)
    runner.twotime.value = bool(o.twotime)
    if recipe.metadata.get("frame_time"):
        runner.frame_time_ms.value = round(recipe.metadata["frame_time"] * 1e3, 9)
    if p.kind == "rois":
        image.mode.value = "rectangles"
        image.clear_regions()
        for r in p.rois:
            image.add_region(*r)
    elif p.kind == "q_rings" or (p.kind == "auto" and image.mode.value == "q-rings"):
        image.mode.value = "q-rings"  # the rings came with the dataset (rings_hint)
    else:  # the whole detector
        image.mode.value = "rectangles"
        image.clear_regions()
        image.add_region(0, int(frame_shape[0]), 0, int(frame_shape[1]))


# ------------------------------------------------------------------------------ saving
def save_folder_template(folder, template_dict: dict, *, url: str | None = None,
                         token: str | None = None, timeout: float = 20) -> dict:
    """Save ``template_dict`` as the template of ``folder`` through the monitor's API.

    Returns
    -------
    dict
        The monitor's answer: ``folder``, ``file`` (the template file), ``template``.

    Raises
    ------
    InvalidInputError
        When there is no monitor, or it refused (its reason).
    """
    url = url or monitor_url()
    token = token or os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not url:
        raise InvalidInputError("this hub runs no beamtime monitor")
    body = json.dumps({"folder": str(folder), "template": template_dict}).encode()
    request = urllib.request.Request(url + "api/templates", data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error") or exc.reason
        except ValueError:
            reason = exc.reason
        raise InvalidInputError(f"the monitor refused the template: {reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise InvalidInputError(f"cannot reach the beamtime monitor ({exc})") from None


class FolderTemplatePanel(widgets.VBox):
    """ "Use for new files in this folder": the dashboard's parameters as the folder's template.

    Parameters
    ----------
    make_template : callable
        Returns ``(folder, template_dict)`` from the dashboard's current state, or raises
        :class:`~speckle.errors.InvalidInputError` with what the user must do first.
    url : str, optional
        The monitor's API (default :func:`~speckle.ui.common.server.monitor_url`). Without a monitor
        the panel is hidden.

    Notes
    -----
    CSS classes: ``speckle-folder-template`` (the panel), ``speckle-use-for-folder`` (the
    button), ``speckle-folder-template-note`` (what was saved, or why not).
    """

    def __init__(self, make_template, *, url: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.add_class("speckle-folder-template")
        self.make_template = make_template
        self.url = url if url is not None else monitor_url()
        self.button = styled(widgets.Button(
            description="Use for new files in this folder", icon="folder-open",
            layout=widgets.Layout(width="300px"),
            tooltip="The beamtime monitor analyses every new file of this dataset's folder with "
                    "these regions and options"), "speckle-use-for-folder")
        self.note = styled(widgets.HTML(), "speckle-folder-template-note")
        self.message = MessageBox()
        self.children = [widgets.HBox([self.button, self.note],
                                      layout=widgets.Layout(align_items="center")), self.message]
        self.layout.display = None if self.url else "none"
        self.saved: dict | None = None
        self._thread: threading.Thread | None = None
        self.button.on_click(lambda _b: self.save())

    def save(self) -> threading.Thread | None:
        """Save in the background (the button); the note says what happened."""
        self.message.clear()
        try:
            folder, template = self.make_template()
        except InvalidInputError as exc:
            self.message.error(exc, title="Not saved:")
            return None
        self.button.disabled = True
        self.note.value = "<span style='color:#555'>saving…</span>"

        def work():
            try:
                answer = save_folder_template(folder, template, url=self.url)
            except InvalidInputError as exc:
                self.note.value = ""
                self.message.error(exc, title="Not saved:")
            else:
                self.saved = answer
                who = answer["template"].get("saved_by") or "you"
                self.note.value = (
                    f"<span style='color:#1a7f37'>Saved: new files in <code>{html.escape(answer['folder'])}"
                    f"</code> are analysed with these settings (template of {html.escape(who)}, "
                    f"<code>{html.escape(Path(answer['file']).name)}</code>).</span>")
            finally:
                self.button.disabled = False

        self._thread = threading.Thread(target=work, name="save-template", daemon=True)
        self._thread.start()
        return self._thread

    def wait(self, timeout: float | None = 30) -> bool:
        """Wait for a save in progress (for scripts and tests)."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

