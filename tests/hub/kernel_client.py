"""Run code in a user's kernel through their server's kernel websocket (as a page or Lab does)."""

from __future__ import annotations

import json
import re
import time
import uuid

import websocket

from hubtools import HubUser


def start_kernel(user: HubUser) -> str:
    """Start a python3 kernel on ``user``'s server (REST); return its id."""
    r = user.post("api/kernels", json={"name": "python3"})
    r.raise_for_status()
    return r.json()["id"]


def page_kernel_id(html: str) -> str:
    """The kernel id a Voila page was rendered with (its jupyter-config-data)."""
    found = re.search(r'"kernelId":\s*"([0-9a-f-]+)"', html)
    assert found, "no kernelId in the page"
    return found.group(1)


class KernelSocket:
    """A websocket on one kernel's channels, authenticated with the user's hub API token."""

    def __init__(self, user: HubUser, kernel_id: str, token: str, timeout: float = 30):
        url = user.server_url.replace("http://", "ws://") + f"api/kernels/{kernel_id}/channels"
        self.ws = websocket.create_connection(url, header=[f"Authorization: token {token}"],
                                              timeout=timeout)
        self.session = uuid.uuid4().hex

    def send(self, code: str) -> str:
        """Send an execute request; return its message id."""
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": self.session,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        }))
        return msg_id

    def _next(self) -> dict | None:
        """The next message as JSON; None for a binary frame (a widget's buffers: not ours)."""
        frame = self.ws.recv()
        return None if isinstance(frame, bytes) else json.loads(frame)

    def start(self, code: str, timeout: float = 30) -> str:
        """Send ``code`` and return once the kernel says it is busy running it."""
        msg_id = self.send(code)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            msg = self._next()
            if (msg is not None and msg.get("parent_header", {}).get("msg_id") == msg_id
                    and msg["header"]["msg_type"] == "status"
                    and msg["content"]["execution_state"] == "busy"):
                return msg_id
        raise TimeoutError(f"the kernel did not start running the code within {timeout} s")

    def run(self, code: str, timeout: float = 120) -> tuple[str, str]:
        """Execute ``code``; return (status of the reply, text printed on stdout)."""
        msg_id = self.send(code)
        out, status, idle = [], None, False
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            msg = self._next()
            if msg is None or msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream" and msg["content"].get("name") == "stdout":
                out.append(msg["content"]["text"])
            elif kind == "error":
                out.append("\n".join(msg["content"].get("traceback", [])))
            elif kind == "execute_reply":
                status = msg["content"]["status"]
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                idle = True  # the output is complete; the reply (another channel) may come after
            if status and idle:
                return status, "".join(out)
        raise TimeoutError(f"no reply within {timeout} s; output so far: {''.join(out)[-500:]}")

    def close(self) -> None:
        self.ws.close()
