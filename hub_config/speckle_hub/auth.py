"""Sign-up with admin approval (NativeAuthenticator), made to work on JupyterHub 6, and the first admin.

Why a subclass: jupyterhub-nativeauthenticator 1.3.0 (its latest release) replaces the hub's
``/hub/login`` handler with one that calls ``self.statsd``, which JupyterHub 6.0 removed: every
login POST answered 500 (``'LoginHandler' object has no attribute 'statsd'``). Sign-up, the
authorization page and password changes work as they are. Here ``/hub/login`` stays JupyterHub's
own handler (the authenticator's ``authenticate`` is unchanged), with the one thing the native
handler added: telling a user whose password is right that an admin has not approved them yet.

The first admin: every name in ``admin_users`` that has no account yet gets one at start, approved,
with a random one-time password written to ``first_admin_password_file`` (mode 600, one
``name password`` line each). Nobody can take an admin name by signing up first. The file is
removed at the next start once every password in it has been changed (``/hub/change-password``).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import bcrypt
from jupyterhub.handlers.login import LoginHandler
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.orm import UserInfo
from traitlets import Unicode


class SpeckleLoginHandler(LoginHandler):
    """JupyterHub's login page and form, plus the "not approved yet" message."""

    def _render(self, login_error=None, username=None, **kwargs):
        if login_error and username and self.request.method == "POST":
            info = self.authenticator.get_user(username)
            password = self.get_body_argument("password", default="", strip=False)
            if info is not None and not info.is_authorized and info.is_valid_password(password):
                login_error = f"The account {username} waits for an administrator's approval."
        return super()._render(login_error=login_error, username=username, **kwargs)


def read_password_file(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    out = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2:
            out[parts[0]] = parts[1]
    return out


def write_password_file(path: Path, entries: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{name} {pw}\n" for name, pw in entries.items()))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def new_password() -> str:
    return secrets.token_urlsafe(12)


class SpeckleNativeAuthenticator(NativeAuthenticator):
    """NativeAuthenticator with a working login on JupyterHub 6 and first admins created at start."""

    first_admin_password_file = Unicode(
        "", config=True, help="Where the one-time passwords of first admins are written (mode 600)."
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.first_admin_password_file:
            self.ensure_first_admins(Path(self.first_admin_password_file))

    def ensure_first_admins(self, path: Path) -> dict[str, str]:
        """Create missing admin accounts; return the one-time passwords still valid."""
        known = read_password_file(path)
        keep = {}
        for name in sorted(self.admin_users):
            name = self.normalize_username(name)
            info = self.get_user(name)
            if info is None:
                password = known.get(name) or new_password()
                hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
                self.db.add(UserInfo(username=name, password=hashed, is_authorized=True))
                self.db.commit()
                self.log.warning("Created the admin account %r; its one-time password is in %s", name, path)
                keep[name] = password
            elif name in known and info.is_valid_password(known[name]):
                keep[name] = known[name]  # not changed yet
        if keep:
            write_password_file(path, keep)
        elif path.exists():
            path.unlink()
            self.log.info("Every first-admin password has been changed; removed %s", path)
        return keep

    def get_handlers(self, app):
        return [
            (r"/login", SpeckleLoginHandler) if pattern == r"/login" else (pattern, handler)
            for pattern, handler in super().get_handlers(app)
        ]
