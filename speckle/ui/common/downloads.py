"""What a dashboard offers to download: figures as PNG, and links to result files.

Every dashboard (XPCS, FTH, refocus, CDI) shows the same list of links
(``a.speckle-download-link``) under its results.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from .server import download_url

__all__ = ["DPI", "INLINE_LIMIT", "links_html", "render_png"]

#: Files at most this large are offered inline when the server cannot serve them.
INLINE_LIMIT = 5 * 2**20
DPI = 110


def render_png(fig, dpi: int = DPI) -> bytes:
    """Render a matplotlib Figure to PNG bytes."""
    with io.BytesIO() as buf:
        fig.savefig(buf, format="png", dpi=dpi)
        return buf.getvalue()


def _link(path: Path, text: str, prefix: str, root) -> str:
    url = download_url(path, prefix=prefix, root=root)
    size = path.stat().st_size if path.exists() else 0
    if url is None and size <= INLINE_LIMIT:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        url = f"data:application/octet-stream;base64,{data}"
    if url is None:
        return f"<li>{html.escape(text)}: {html.escape(str(path))} (copy it from there)</li>"
    return (f"<li><a class='speckle-download-link' href='{html.escape(url)}' "
            f"download='{html.escape(path.name)}' target='_blank'>{html.escape(text)}</a> "
            f"<span style='color:#777'>({size / 1e6:.2f} MB)</span></li>")


def links_html(entries, folder, base_url: str, server_root=None) -> str:
    """Download links to result files, and where they are on the server (every dashboard's).

    Parameters
    ----------
    entries : iterable of (path-like, str)
        Each file and its description.
    folder : path-like
        The result folder, named under the links.
    base_url : str
        The user server's base URL (links are ``{base_url}files/<path>?download=1``).
    server_root : path-like, optional
        The Jupyter server's root folder (default ``SPECKLE_SERVER_ROOT`` or home). Files
        outside it are offered inline when small (``data:`` URLs), else named.

    Returns
    -------
    str
        HTML: a list of ``a.speckle-download-link``.
    """
    links = "".join(_link(Path(p), text, base_url, server_root) for p, text in entries)
    return (f"<div><b>Download</b><ul style='margin:4px 0'>{links}</ul>"
            f"<span style='color:#555'>Saved on the server in "
            f"<code>{html.escape(str(folder))}</code></span></div>")
