"""The beamtime monitor: every new dataset analysed as it lands, on Dask.

No Jupyter inside: the ``speckle watch`` and ``speckle reprocess`` commands and the hub's
Beamtime service are thin adapters over this package.

- :mod:`~speckle.monitor.watcher`: :class:`Monitor`, the watcher (watchdog, inotify or polling)
  and its loop;
- :mod:`~speckle.monitor.completeness`: when a file is complete (settled, no writer, opens);
- :mod:`~speckle.monitor.recognise`: XPCS series, FTH hologram or CDI pattern, from the content;
- :mod:`~speckle.monitor.templates`: per-folder analysis templates (YAML);
- :mod:`~speckle.monitor.jobs`: one file's analysis, the task a Dask worker runs;
- :mod:`~speckle.monitor.cluster`: the engine (Dask LocalCluster, Slurm, gateway, a scheduler);
- :mod:`~speckle.monitor.state`, :mod:`~speckle.monitor.index`, :mod:`~speckle.monitor.layout`:
  the results folder (SQLite state, ``index.jsonl``, result folders);
- :mod:`~speckle.monitor.reprocess`: a whole beamtime again, resumable;
- :mod:`~speckle.monitor.config`: the settings.
"""

from .cluster import ClusterSpec
from .config import MonitorConfig
from .templates import Template, TemplateStore, load_template, save_template
from .watcher import Monitor

__all__ = ["ClusterSpec", "Monitor", "MonitorConfig", "Template", "TemplateStore",
           "load_template", "save_template"]
