"""Voila's preheated kernels inside the user's jupyter-server (Voila as a server extension).

Voila 0.5 keeps a pool of kernels that have already executed a dashboard notebook
(``--preheat_kernel``; ``voila.voila_kernel_manager``): a page view takes one, gets the rendered
cells at once, and the pool refills. Its request handler uses such a pool in the server-extension
mode too (``VoilaHandler`` asks ``kernel_manager.get_pool_size``), but only Voila's standalone app
can create one: the pool's kernel manager reads the Voila app as its ``parent`` (notebook path,
Voila configuration, template paths, web settings). :class:`PreheatedKernelManager` is that very
class (``voila_kernel_manager_factory`` over jupyter-server's kernel manager) with the jupyter
server seen through :class:`_ServerAsVoilaApp`, which answers those questions.

A view of a dashboard whose kernel is still warming up (just after the server started) joins
that warm-up instead of starting another kernel. Pooled kernels are not culled as idle (Voila's
``cull_kernel_if_idle``); the kernels of page views are, as before.

Imported by the user server (``hub_config/user_server/singleuser.py`` puts this folder on
``sys.path``); configured by the hub's spawner::

    --ServerApp.kernel_manager_class=speckle_preheat.PreheatedKernelManager
    --PreheatedKernelManager.preheat_notebooks=dashboards/xpcs_quick_check.ipynb
"""

from __future__ import annotations

import asyncio
import functools
import os

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from traitlets import Bool, List, Unicode, default
from traitlets.config import LoggingConfigurable
from voila.configuration import VoilaConfiguration
from voila.paths import collect_template_paths
from voila.voila_kernel_manager import voila_kernel_manager_factory


class _ServerAsVoilaApp(LoggingConfigurable):
    """What Voila's pooled kernel manager reads from the Voila app, answered by the jupyter server.

    The server's web application and contents manager do not exist yet when the kernel manager is
    made; they are looked up when the pool renders its first notebook (on the running event loop).
    """

    def __init__(self, server, kernel_manager: "PreheatedKernelManager"):
        super().__init__(parent=server, log=server.log)
        self.server = server
        self.kernel_manager = kernel_manager

    root_dir = property(lambda self: self.server.root_dir)
    base_url = property(lambda self: self.server.base_url)
    server_url = property(lambda self: self.server.base_url)  # Voila's app serves under its base url
    port = property(lambda self: self.server.port)
    app = property(lambda self: self.server.web_app)
    config_manager = property(lambda self: self.server.config_manager)
    contents_manager = property(lambda self: self.server.contents_manager)
    kernel_spec_manager = property(lambda self: self.server.kernel_spec_manager)

    @property
    def notebook_path(self) -> str:
        """The first notebook to preheat: Voila's pool starts with its app's notebook (and, with
        none, would preheat every notebook under the root folder)."""
        first = (self.kernel_manager.preheat_notebooks or ["(none)"])[0]
        return os.path.join(self.root_dir, first)

    @functools.cached_property
    def voila_configuration(self) -> VoilaConfiguration:
        return VoilaConfiguration(parent=self.server)  # as voila.server_extension makes it

    @functools.cached_property
    def template_paths(self) -> list[str]:
        return collect_template_paths(["voila", "nbconvert"], self.voila_configuration.template)


_VoilaPooled = voila_kernel_manager_factory(AsyncMappingKernelManager, preheat_kernel=True, default_pool_size=0)


class PreheatedKernelManager(_VoilaPooled):
    """jupyter-server's kernel manager with Voila's pool of preheated dashboard kernels."""

    preheat_notebooks = List(
        Unicode(), config=True,
        help="Notebooks (relative to the server's root) to keep one executed kernel ready for; "
             "those missing are skipped.",
    )
    refill = Bool(
        True, config=True,
        help="Start another preheated kernel fill_delay seconds after one is taken. Without, each "
             "notebook has one, from the server's start, for its first view.",
    )

    @default("kernel_pools_config")
    def _pools_for_preheat_notebooks(self):
        pools = {"default": {"pool_size": 0}}
        pools.update({nb: {"pool_size": 1} for nb in self.preheat_notebooks})
        return pools

    def __init__(self, **kwargs):
        kwargs["parent"] = _ServerAsVoilaApp(kwargs["parent"], self)
        super().__init__(**kwargs)  # fills the pool of the first notebook
        for nb in self.preheat_notebooks[1:]:
            self.fill_if_needed(delay=0, notebook_name=nb)

    def fill_if_needed(self, delay=None, notebook_name=None, **kwargs):
        if notebook_name is None or not os.path.isfile(os.path.join(self.root_dir, notebook_name)):
            return
        if delay is None and not self.refill:  # Voila refills (delay None) after each take
            return
        delay = self.fill_delay if delay is None else delay
        if delay > 0:
            # Voila puts a task that first sleeps `delay` into the pool at once, and a view in
            # that time waited for it: up to fill_delay plus a warm-up. Refill later instead; until
            # then a view starts a kernel of its own, as without preheating.
            asyncio.get_event_loop().call_later(
                delay, functools.partial(self.fill_if_needed, 0, notebook_name, **kwargs))
            return
        # Voila's handler takes a pooled kernel only once the notebook is known here, which Voila
        # records when the kernel has started: a view just after the server started would start a
        # cold kernel beside the warming one. Known from now on, such a view waits for the pool.
        conf = self.parent.voila_configuration
        self.notebook_data.setdefault(notebook_name, {"template": conf.template, "theme": conf.theme,
                                                      "kernel_ids": set()})
        super().fill_if_needed(delay=delay, notebook_name=notebook_name, **kwargs)
