"""Voila's preheated kernels inside the user's jupyter-server (Voila as a server extension).

Voila 0.5 keeps a pool of kernels that have already executed a dashboard notebook
(``--preheat_kernel``; ``voila.voila_kernel_manager``): a page view takes one, gets the rendered
cells at once, and the pool refills. Its request handler uses such a pool in the server-extension
mode too (``VoilaHandler`` asks ``kernel_manager.get_pool_size``), but only Voila's standalone app
can create one: the pool's kernel manager reads the Voila app as its ``parent`` (notebook path,
Voila configuration, template paths, web settings). :class:`PreheatedKernelManager` is that very
class (``voila_kernel_manager_factory`` over jupyter-server's kernel manager) with the jupyter
server seen through :class:`_ServerAsVoilaApp`, which answers those questions.

The first pooled kernel is launched while the server is still initialising (its web application,
which rendering the notebook needs, does not exist yet): the loop runs just long enough to start
the process, which then boots and imports ``kernel_preload`` on the other core while the server
finishes; the notebook is executed in it once the server runs. A view of a dashboard whose kernel
is still warming up (just after the server started) joins that warm-up instead of starting
another kernel. Pooled kernels are not culled as idle (Voila's
``cull_kernel_if_idle``); the kernels of page views are, as before.

A dashboard kernel that dies (out of memory, killed) is reported dead and removed instead of being
restarted: a restarted kernel is empty and its page's widgets would stop answering without a
word, whereas a removed one lets the page (the speckle Voila template) tell the user to reload,
and why (``speckle_jupyter.kernel_end``: the server's memory limit, with its size).
JupyterLab's kernels restart as usual. The class serves every user server, with a pool or not.

A dashboard kernel whose pages have all gone (the tab closed) is shut down ``orphan_grace``
seconds later, whatever it computes: an analysis nobody can see again does not keep a core busy
for hours. JupyterLab's kernels keep the usual rules (a power user's long run goes on).

Imported by the user server (``hub_config/user_server/singleuser.py`` puts this folder on
``sys.path``); configured by the hub's spawner::

    --ServerApp.kernel_manager_class=speckle_preheat.PreheatedKernelManager
    --PreheatedKernelManager.preheat_notebooks=dashboards/xpcs_quick_check.ipynb
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import time

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from speckle_jupyter.kernel_end import KernelEnds
from tornado.ioloop import PeriodicCallback
from traitlets import Bool, Float, List, Unicode, default
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

    @default("kernel_manager_class")
    def _warm_kernels(self):
        # dashboards' kernels forked from this server's kernel template, when it has one
        # (hub_config/user_server/warm_kernels.py); otherwise jupyter-server's own
        return "warm_kernels.WarmKernelManager"

    @default("kernel_pools_config")
    def _pools_for_preheat_notebooks(self):
        pools = {"default": {"pool_size": 0}}
        pools.update({nb: {"pool_size": 1} for nb in self.preheat_notebooks})
        return pools

    orphan_grace = Float(
        120.0, config=True,
        help="Seconds a dashboard's kernel lives on once its last page has gone (a closed tab); "
             "then it is shut down, whatever it computes. Long enough for a laptop that sleeps "
             "a moment to come back. 0: never (JupyterLab kernels are never stopped this way).",
    )

    kernel_preload = Unicode(
        # the compiled XPCS kernels too: their 0.4 s of loading is then not part of the first
        # Analyze (the page shows at once either way)
        "import speckle.ui, speckle.xpcs.engine; speckle.xpcs.engine.load_all()", config=True,
        help="Python each preheated kernel runs as it boots (IPKernelApp.exec_lines), before the "
             "notebook is executed in it; empty for none.",
    )

    def __init__(self, **kwargs):
        kwargs["parent"] = _ServerAsVoilaApp(kwargs["parent"], self)
        self._launched: asyncio.Future | None = None  # set by fill_if_needed during start-up
        self.kernel_ends = KernelEnds()  # why dashboard kernels died (speckle/api/kernels/<id>/end)
        self._dashboard_kernels: set[str] = set()
        self._orphaned_since: dict[str, float] = {}  # dashboard kernels whose pages all left
        self._owner_watch: PeriodicCallback | None = None
        super().__init__(**kwargs)  # puts the first notebook's warm-up task on the loop
        if self._launched is not None:
            self._launch_during_startup(self._launched)
        for nb in self.preheat_notebooks[1:]:
            self.fill_if_needed(delay=0, notebook_name=nb)

    def _launch_during_startup(self, launched: asyncio.Future) -> None:
        """Run the (not yet running) server loop until the first warm-up task has launched its
        kernel; the task then waits for the web application, and the loop stops."""
        loop = asyncio.get_event_loop()
        if loop.is_running():
            return
        try:
            loop.run_until_complete(asyncio.wait_for(asyncio.shield(launched), 10))
        except Exception as e:  # the task itself goes on, and reports, when the server runs
            self.log.warning("Early start of the preheated kernel did not finish: %s", e)

    async def _initialize(self, notebook_path, kernel_id=None, **kwargs):
        if kernel_id is None:  # a new pooled kernel: launch it before the renderer exists
            launched, self._launched = self._launched, None
            try:
                kernel_id = await self.start_kernel(
                    kernel_name=_kernel_name(self.root_dir, notebook_path),
                    extra_arguments=self._preload_arguments(), **kwargs)
            except BaseException as e:
                if launched is not None:
                    launched.set_exception(e)
                raise
            if launched is not None:
                launched.set_result(kernel_id)
            while getattr(self.parent.server, "web_app", None) is None:
                await asyncio.sleep(0.02)  # the server is still initialising
        return await super()._initialize(notebook_path, kernel_id, **kwargs)

    async def start_kernel(self, *args, **kwargs):
        kernel_id = await super().start_kernel(*args, **kwargs)
        if "VOILA_BASE_URL" in (kwargs.get("env") or {}):  # a dashboard's kernel (Voila sets it)
            restarter = getattr(self.get_kernel(kernel_id), "_restarter", None)
            if restarter is not None:
                restarter.restart_limit = 0  # first death: "dead" callbacks, the kernel is removed
            self.kernel_ends.watch(kernel_id, self.get_kernel(kernel_id))
            self._dashboard_kernels.add(kernel_id)
            self._watch_owners()
        return kernel_id

    # -- a dashboard's kernel lives as long as its page ------------------------------------------
    # A Voila page cannot be reopened onto its kernel: once every page of a dashboard kernel has
    # disconnected (and none came back within orphan_grace), nobody will see what it computes.
    # Preheated kernels waiting in the pool have never had a page, so they are left alone.

    def notify_connect(self, kernel_id):
        super().notify_connect(kernel_id)
        self._orphaned_since.pop(kernel_id, None)

    def notify_disconnect(self, kernel_id):
        super().notify_disconnect(kernel_id)
        if kernel_id in self._dashboard_kernels and not self._kernel_connections.get(kernel_id):
            self._orphaned_since[kernel_id] = time.monotonic()

    def _watch_owners(self) -> None:
        if self._owner_watch is None and self.orphan_grace > 0:
            every = min(max(self.orphan_grace / 4, 0.5), 10.0)
            self._owner_watch = PeriodicCallback(self._stop_orphans, every * 1000)
            self._owner_watch.start()

    async def _stop_orphans(self) -> None:
        now = time.monotonic()
        for kernel_id, since in list(self._orphaned_since.items()):
            if now - since < self.orphan_grace:
                continue
            self._orphaned_since.pop(kernel_id, None)
            if kernel_id in self._kernels and not self._kernel_connections.get(kernel_id):
                self.log.info("Shutting down dashboard kernel %s: its page has been gone for %.0f s",
                              kernel_id, now - since)
                try:
                    await self.shutdown_kernel(kernel_id)
                except Exception as e:  # noqa: BLE001 - reported, the next orphan is still handled
                    self.log.warning("Could not shut down the orphaned kernel %s: %s", kernel_id, e)

    def remove_kernel(self, kernel_id):
        self._dashboard_kernels.discard(kernel_id)
        self._orphaned_since.pop(kernel_id, None)
        return super().remove_kernel(kernel_id)

    def _preload_arguments(self) -> list[str]:
        return [f"--IPKernelApp.exec_lines={self.kernel_preload}"] if self.kernel_preload else []

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
        if getattr(self.parent.server, "web_app", None) is None and self._launched is None:
            self._launched = asyncio.get_event_loop().create_future()
        self.notebook_data.setdefault(notebook_name, {"template": conf.template, "theme": conf.theme,
                                                      "kernel_ids": set()})
        super().fill_if_needed(delay=delay, notebook_name=notebook_name, **kwargs)


def _kernel_name(root_dir: str, notebook_path: str) -> str:
    """The kernel a notebook asks for (its kernelspec), python3 when it names none."""
    try:
        with open(os.path.join(root_dir, notebook_path), encoding="utf-8") as f:
            return json.load(f)["metadata"]["kernelspec"]["name"] or "python3"
    except (OSError, ValueError, KeyError, TypeError):
        return "python3"
