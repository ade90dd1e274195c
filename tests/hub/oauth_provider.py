"""A minimal OAuth2 authorization-code provider for tests ONLY (standard library; never for use).

It stands in for a facility's single sign-on (Keycloak and the like) as the hub sees it:

- ``GET /authorize``: checks ``client_id``, ``redirect_uri`` and ``response_type=code``, shows a
  login form; ``POST /authorize`` with a right password redirects to ``redirect_uri?code=...&state=...``.
- ``POST /token``: exchanges a code once for a bearer token, checking the client id and secret
  (HTTP Basic or form fields), that ``redirect_uri`` is the one the code was issued for, and the
  PKCE ``code_verifier`` (S256) when the authorize request carried a challenge.
- ``GET /userinfo`` with ``Authorization: Bearer <token>``: ``{"sub", "preferred_username",
  "name", "groups"}``.

:class:`OAuthProvider` serves on a free port of 127.0.0.1 in a thread (``with OAuthProvider(...)``).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse


@dataclass
class OAuthAccount:
    username: str
    password: str
    groups: tuple[str, ...] = ()


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, fmt, *args):  # quiet test output; requests are kept in provider.log
        self.server.provider.log.append(f"{self.command} {self.path.split('?')[0]}")

    def _send(self, status: int, body: str, ctype: str = "application/json", headers: dict | None = None):
        data = body.encode()
        self.send_response(status)
        for key, value in {"Content-Type": ctype, "Content-Length": str(len(data)), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, error: str) -> None:
        self._send(status, json.dumps({"error": error, "error_description": error}))

    def _form(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}

    def do_GET(self):
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/authorize":
            problem = self.server.provider.check_client_request(query)
            return self._send(400, problem) if problem else self._login_page(query)
        if url.path == "/userinfo":
            auth = self.headers.get("Authorization", "")
            account = self.server.provider.tokens.get(auth.removeprefix("Bearer ").strip())
            if not auth.startswith("Bearer ") or account is None:
                return self._error(401, "invalid_token")
            return self._send(200, json.dumps({
                "sub": f"id-{account.username}", "preferred_username": account.username,
                "name": account.username.title(), "groups": list(account.groups)}))
        self._send(404, "{}")

    def _login_page(self, query: dict, error: str = "") -> None:
        hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in query.items() if k not in ("username", "password"))
        self._send(200, f"""<!doctype html><title>Facility SSO (test)</title>
<h1>Facility SSO</h1><p id="sso-error">{html.escape(error)}</p>
<form method="post" action="/authorize">{hidden}
<input id="sso-username" name="username"> <input id="sso-password" name="password" type="password">
<button id="sso-submit" type="submit">Sign in</button></form>""", "text/html; charset=utf-8")

    def do_POST(self):
        provider = self.server.provider
        form = self._form()
        if self.path == "/authorize":
            problem = provider.check_client_request(form)
            if problem:
                return self._send(400, problem)
            account = provider.accounts.get(form.get("username", ""))
            if account is None or not secrets.compare_digest(account.password, form.get("password", "")):
                return self._login_page(form, "Wrong user name or password.")
            code = secrets.token_urlsafe(16)
            provider.codes[code] = (account, form["redirect_uri"], form.get("code_challenge"))
            back = {"code": code, **({"state": form["state"]} if "state" in form else {})}
            sep = "&" if "?" in form["redirect_uri"] else "?"
            return self._send(302, "", "text/plain", {"Location": form["redirect_uri"] + sep + urlencode(back)})
        if self.path == "/token":
            return self._token(form)
        self._send(404, "{}")

    def _token(self, form: dict) -> None:
        provider = self.server.provider
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        if client_id != provider.client_id or not secrets.compare_digest(secret or "", provider.client_secret):
            return self._error(401, "invalid_client")
        if form.get("grant_type") != "authorization_code":
            return self._error(400, "unsupported_grant_type")
        issued = provider.codes.pop(form.get("code", ""), None)  # a code works once
        if issued is None or issued[1] != form.get("redirect_uri"):
            return self._error(400, "invalid_grant")
        account, _, challenge = issued
        if challenge:
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != challenge:
                return self._error(400, "invalid_grant")
        token = secrets.token_urlsafe(24)
        provider.tokens[token] = account
        self._send(200, json.dumps({"access_token": token, "token_type": "Bearer", "expires_in": 3600,
                                    "scope": "openid profile"}))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    provider: "OAuthProvider"


class OAuthProvider:
    """The provider on ``http://127.0.0.1:<port>`` (``url``) for one client and ``accounts``."""

    def __init__(self, client_id: str, client_secret: str, redirect_uri: str, accounts: list[OAuthAccount]):
        self.client_id, self.client_secret, self.redirect_uri = client_id, client_secret, redirect_uri
        self.accounts = {a.username: a for a in accounts}
        self.codes: dict[str, tuple] = {}
        self.tokens: dict[str, OAuthAccount] = {}
        self.log: list[str] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.provider = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def check_client_request(self, query: dict) -> str:
        """Why an authorize request is refused ('' when it is fine)."""
        if query.get("client_id") != self.client_id:
            return "unknown client_id"
        if query.get("redirect_uri") != self.redirect_uri:
            return "redirect_uri is not registered for this client"
        if query.get("response_type", "code") != "code":
            return "only response_type=code"
        return ""

    def __enter__(self) -> "OAuthProvider":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
