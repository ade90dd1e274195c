"""The region editor on screen: rectangles drawn with the mouse or typed, listed, deleted.

One widget layer over :class:`~speckle.ui.common.regions.RegionList`, the same on every page
that selects regions of an image (the XPCS image, the imaging views). Dragging on the image
(matplotlib's ``RectangleSelector``, see :meth:`RegionEditor.attach`) adds a region; one can be
typed as ``ROW0:ROW1,COL0:COL1`` (several separated by ``;``) and added with Enter or the
button. With one region at most (``max_regions=1``) a new region replaces the old one and the
button says Set; with more they accumulate in a list with Delete and Clear all.
"""

from __future__ import annotations

import html
from collections.abc import Callable

import ipywidgets as widgets
import traitlets
from matplotlib.widgets import RectangleSelector

from ...errors import InvalidInputError
from ._common import MessageBox, delegated, styled
from .canvas import draw_rectangles, rectangle_selector
from .regions import (
    Region,
    RegionList,
    describe_region,
    parse_regions,
    region_from_extents,
)

__all__ = ["RegionEditor", "RegionEditorOwner"]


class RegionEditor(widgets.VBox):
    """The regions of one image: the controls beside it and the rectangles drawn on it.

    Parameters
    ----------
    max_regions : int or None
        See :class:`~speckle.ui.common.regions.RegionList` (1: one region, replaced; None: any
        number; 0: none, the editor is hidden).
    help_text : str, optional
        The hint above the controls.
    model : RegionList, optional
        The regions to edit (a controller's); default a new one with ``max_regions``.
    message : MessageBox, optional
        Where refusals are said (default one of its own, shown below the controls).
    before_add : callable, optional
        Called with no argument after a region is accepted and before it is added (a page
        switching to its rectangles mode, say).
    **kwargs
        Passed to ``ipywidgets.VBox``.

    Attributes
    ----------
    model : RegionList
        The regions (plain Python; its changes update the controls).
    regions_version : int
        Incremented whenever the regions change (a trait: observe it).

    Notes
    -----
    CSS classes: ``speckle-region-editor`` (the whole), ``speckle-region-info``,
    ``speckle-region-list`` (several regions only), ``speckle-region-delete``,
    ``speckle-region-clear``, ``speckle-region-text`` and ``speckle-region-set`` (Set or Add).
    """

    regions_version = traitlets.Int(0)

    def __init__(self, *, max_regions: int | None = None, help_text: str | None = None,
                 model: RegionList | None = None, message: MessageBox | None = None,
                 before_add: Callable[[], None] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.add_class("speckle-region-editor")
        self.model = RegionList(max_regions) if model is None else model
        max_regions = self.model.max_regions
        self._before_add = before_add
        own_message = message is None
        self.message = MessageBox() if own_message else message
        self.selector: RectangleSelector | None = None
        single = max_regions == 1
        self.region_info = styled(widgets.HTML(), "speckle-region-info")
        self.region_list = styled(widgets.Select(options=[], rows=6,
                                                 layout=widgets.Layout(width="260px")),
                                  "speckle-region-list")
        self.delete_button = styled(widgets.Button(description="Delete", icon="trash",
                                                   layout=widgets.Layout(width="100px")),
                                    "speckle-region-delete")
        self.clear_button = styled(widgets.Button(description="Clear" if single else "Clear all",
                                                  layout=widgets.Layout(width="100px")),
                                   "speckle-region-clear")
        self.region_text = styled(widgets.Text(placeholder="ROW0:ROW1,COL0:COL1",
                                               continuous_update=False,
                                               layout=widgets.Layout(width="190px")),
                                  "speckle-region-text")
        self.set_button = styled(widgets.Button(description="Set" if single else "Add",
                                                icon="check" if single else "plus",
                                                layout=widgets.Layout(width="70px")),
                                 "speckle-region-set")
        hint = help_text or ("Drag on the image to select a region, or type one (half-open "
                             "pixel ranges).")
        children = [widgets.HTML(f"<span style='color:#555'>{html.escape(hint)}</span>"),
                    self.region_info]
        if single:
            children.append(self.clear_button)
        else:
            children += [self.region_list, widgets.HBox([self.delete_button, self.clear_button])]
        children.append(widgets.HBox([self.region_text, self.set_button]))
        if own_message:
            children.append(self.message)
        self.children = children
        if max_regions == 0:
            self.layout.display = "none"
        self._sync()
        self.model.on_change(self._on_change)
        self.delete_button.on_click(lambda _b: self.model.remove(self.region_list.index))
        self.clear_button.on_click(lambda _b: self.model.clear())
        self.set_button.on_click(lambda _b: self._add_typed())
        self.region_text.observe(lambda _c: self._add_typed(), "value")  # Enter, or leaving it

    # ---------------------------------------------------------------- the regions
    def add(self, r0: int, r1: int, c0: int, c1: int) -> bool:
        """Add a region (half-open pixel ranges); return False, saying why, when refused."""
        try:
            region = self.model.check(r0, r1, c0, c1)
        except InvalidInputError as exc:
            if self.model.max_regions != 0:
                self.message.error(exc)
            return False
        self.message.clear()
        if self._before_add is not None:
            self._before_add()
        self.model.add(*region)
        return True

    def _add_typed(self) -> None:
        text = self.region_text.value.strip()
        if not text:
            return
        try:
            regions = [self.model.check(*r) for r in parse_regions(text)]
        except InvalidInputError as exc:
            self.message.error(exc)
            return
        for region in regions:
            self.add(*region)
        self.region_text.value = ""

    # ---------------------------------------------------------------- on the image
    def attach(self, ax) -> RectangleSelector:
        """Let a drag with the left button on ``ax`` (an image in pixel coordinates) add a
        region; the selector (``set_active`` switches it)."""
        self.selector = rectangle_selector(ax, self._on_drawn)
        if self.model.max_regions == 0:
            self.selector.set_active(False)
        return self.selector

    def _on_drawn(self, press, release) -> None:
        if self.model.shape is None:
            return
        region = region_from_extents(press.xdata, release.xdata, press.ydata, release.ydata,
                                     self.model.shape)
        if region is not None:
            self.add(*region)

    def outlines(self, ax) -> list:
        """Draw the regions' outlines on ``ax`` (numbered when there may be several); the
        artists, to remove before the next drawing."""
        return draw_rectangles(ax, self.model.regions, numbered=self.model.max_regions != 1)

    # ---------------------------------------------------------------- the controls
    def _sync(self) -> None:
        regions = self.model.regions
        self.region_list.options = [f"{i}: {describe_region(r)}"
                                    for i, r in enumerate(regions, start=1)]
        self.region_list.index = len(regions) - 1 if regions else None
        if self.model.max_regions == 1:
            self.region_info.value = (
                f"<b>Region:</b> {describe_region(regions[-1])}" if regions
                else "<b>Region:</b> <span style='color:#555'>none (the whole image)</span>")
        else:
            self.region_info.value = f"<b>Regions:</b> {len(regions)}"

    def _on_change(self) -> None:
        self._sync()
        self.regions_version += 1


class RegionEditorOwner:
    """The region methods of a view whose :class:`RegionEditor` is ``self.editor``.

    Mixed into the XPCS image view and the complex image view, so both answer to the same
    names: :attr:`regions`, :attr:`region`, :meth:`add_region`, :meth:`remove_region`,
    :meth:`clear_regions`, and the editor's controls (``region_text``, ``region_list``,
    ``region_info``, ``set_button``, ``delete_button``, ``clear_button``).
    """

    editor: RegionEditor

    region_text = delegated("editor", "region_text")
    region_list = delegated("editor", "region_list")
    region_info = delegated("editor", "region_info")
    set_button = delegated("editor", "set_button")
    delete_button = delegated("editor", "delete_button")
    clear_button = delegated("editor", "clear_button")

    @property
    def regions(self) -> list[Region]:
        """The regions, in the order given (a copy)."""
        return self.editor.model.regions

    @property
    def region(self) -> Region | None:
        """The region given last, or None."""
        return self.editor.model.last

    def add_region(self, r0: int, r1: int, c0: int, c1: int) -> bool:
        """Add a region (half-open pixel ranges); return False (and say why) if refused."""
        return self.editor.add(r0, r1, c0, c1)

    def remove_region(self, index: int | None) -> None:
        """Remove the region at ``index`` (0-based) of :attr:`regions`."""
        self.editor.model.remove(index)

    def clear_regions(self) -> None:
        """Remove every region."""
        self.editor.model.clear()
