"""A start that a stop interrupts is answered 409 with a sentence, not 500.

Stopping a server while it starts (the landing page starts it as soon as it loads; the user
presses "Stop my server") makes JupyterHub 6 cancel the start, and the request that asked for the
start then failed with an unhandled ``CancelledError``: a 500 and a traceback in the log. The
request is answered 409 "stopped while it was starting" instead; the stop itself is unchanged.
"""

from __future__ import annotations

import asyncio
import functools

from jupyterhub.apihandlers.users import UserServerAPIHandler
from tornado import web

__all__ = ["answer_interrupted_starts"]

MESSAGE = "The server was stopped while it was starting; start it again when you need it."


def answer_interrupted_starts() -> None:
    """Wrap the start request of JupyterHub's server API (once; called by jupyterhub_config.py)."""
    post = UserServerAPIHandler.post
    if getattr(post, "speckle_wrapped", False):
        return

    @functools.wraps(post)
    async def start(self, *args, **kwargs):
        try:
            return await post(self, *args, **kwargs)
        except asyncio.CancelledError:
            raise web.HTTPError(409, MESSAGE) from None

    start.speckle_wrapped = True
    UserServerAPIHandler.post = start
