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

Accounts under abuse: a wrong password slows down the address it came from (speckle_hub.throttle)
and never locks the account; passwords are checked and hashed in threads of lower priority than
the hub's event loop (bcrypt takes about a quarter of a second: on the event loop, twenty logins
froze the hub for seconds; in threads at the loop's own priority, ten logins at once still
delayed its answers by a second on two cores); sign-up answers
the same whether the name exists or not, and stops taking requests while ``max_pending_signups``
wait for approval.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import bcrypt
from jupyterhub.handlers.login import LoginHandler
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import DiscardHandler, SignUpHandler, ToggleAuthorizationHandler
from nativeauthenticator.orm import UserInfo
from tornado import web
from traitlets import Float, Integer, Unicode

from .limits import hub_thread_priority
from .throttle import LoginThrottle

#: Checked against when the name does not exist, so that an unknown name costs the same time.
_NOBODY = bcrypt.hashpw(b"no such account", bcrypt.gensalt())
#: Below the event loop's priority (limits.event_loop_priority): the hub answers first.
_HASHING = ThreadPoolExecutor(max_workers=4, thread_name_prefix="speckle-bcrypt",
                              initializer=hub_thread_priority)


async def _hashing(func, *args):
    """``func(*args)`` (bcrypt) in the hashing threads."""
    return await asyncio.get_running_loop().run_in_executor(_HASHING, func, *args)


class SpeckleLoginHandler(LoginHandler):
    """JupyterHub's login page and form, plus why a right password did not log in (the account
    waits for approval, or the address must wait after failures)."""

    def _render(self, login_error=None, username=None, **kwargs):
        note = getattr(self, "speckle_login_note", None)
        if login_error and note:
            login_error = note
        return super()._render(login_error=login_error, username=username, **kwargs)


def _from_the_hub_itself(handler) -> None:
    """NativeAuthenticator approves and discards accounts on GET (the links of /hub/authorize),
    which a link or an image on another site could trigger in an admin's browser. Such a GET is
    taken only from the hub's own pages: the browser says so (``Sec-Fetch-Site``) or, from older
    browsers and scripts, the ``Referer`` is this hub."""
    site = handler.request.headers.get("Sec-Fetch-Site")
    if site in ("same-origin", "none"):
        return
    referer = urlparse(handler.request.headers.get("Referer") or "")
    if site is None and referer.netloc == handler.request.host:
        return
    raise web.HTTPError(403, "Approve and discard accounts with the buttons of the hub's "
                             "Authorize Users page.")


class SpeckleToggleAuthorizationHandler(ToggleAuthorizationHandler):
    """``/hub/authorize/<name>``: from the hub's own page only; an unknown name is a 404 (was 500)."""

    async def get(self, slug):
        _from_the_hub_itself(self)
        if self.authenticator.get_user(slug) is None:
            raise web.HTTPError(404, f"No sign-up named {slug}.")
        return await super().get(slug)


class SpeckleDiscardHandler(DiscardHandler):
    """``/hub/discard/<name>``: from the hub's own page only."""

    async def get(self, user_name):
        _from_the_hub_itself(self)
        return await super().get(user_name)


class SpeckleSignUpHandler(SignUpHandler):
    """Sign-up that tells nobody which names exist, hashes in a thread, and caps pending requests."""

    async def post(self):
        a = self.authenticator
        if not a.enable_signup:
            raise web.HTTPError(404)
        username = self.get_body_argument("username", "", strip=False)
        password = self.get_body_argument("signup_password", "", strip=False)
        confirmation = self.get_body_argument("signup_password_confirmation", "", strip=False)
        # hashed whatever happens next: a taken name must cost the same time as a free one
        hashed = await _hashing(bcrypt.hashpw, password.encode(), bcrypt.gensalt())
        alert, message = "alert-danger", None
        if password != confirmation:
            message = "Your password did not match the confirmation. Please try again."
        elif not a.validate_username(username) or not a.is_password_strong(password):
            message = (f"Choose a name of lower-case letters, digits, - and _ (starting with a letter) "
                       f"and a password of at least {a.minimum_password_length} characters that is "
                       "not a common one.")
        elif a.pending_signups() >= a.max_pending_signups:
            message = ("Sign-ups are paused: many requests already wait for an administrator's "
                       "approval. Please ask the beamline staff.")
        else:
            if not a.user_exists(username):
                a.add_signup(username, hashed)
            alert = "alert-info"
            message = ("Your request has been sent to the admins for approval (if the name was "
                       "free): you can log in once it is approved.")
        html = await self.render_template(
            "signup.html", ask_email=False, result_message=message, alert=alert,
            two_factor_auth=False, two_factor_auth_user=False, two_factor_auth_value="",
            recaptcha_key=a.recaptcha_key, tos=a.tos)
        self.finish(html)


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
    free_failures = Integer(
        5, config=True,
        help="Wrong passwords an address may give for a name before it waits (1, 2, 4... s); 0: "
             "no throttling.")
    max_wait = Float(600, config=True, help="The longest wait after failed logins (s).")
    max_pending_signups = Integer(
        50, config=True, help="Sign-ups waiting for approval beyond which new ones are refused.")

    @functools.cached_property
    def throttle(self) -> LoginThrottle:
        return LoginThrottle(self.free_failures, self.max_wait)

    async def authenticate(self, handler, data):
        """The name when the password is right and the account approved; else None, slowing
        down the address after repeated failures. bcrypt runs in a thread."""
        name = self.normalize_username(data.get("username") or "")
        password = data.get("password") or ""
        address = handler.request.remote_ip if handler is not None else ""
        wait = self.throttle.wait(address, name)
        if wait > 0:
            _note(handler, f"Too many failed logins from your address: wait {math.ceil(wait)} s "
                           "before the next try.")
            return None
        info = self.get_user(name)
        stored = info.password if info is not None else _NOBODY
        valid = await _hashing(bcrypt.checkpw, password.encode(), stored) and info is not None
        if valid and info.has_2fa:
            valid = info.is_valid_token(data.get("2fa"))
        if not valid:
            self.throttle.failure(address, name)
            return None
        self.throttle.success(address, name)
        if not info.is_authorized:
            _note(handler, f"The account {name} waits for an administrator's approval.")
            return None
        return name

    def pending_signups(self) -> int:
        """Sign-ups that wait for an administrator's approval."""
        return self.db.query(UserInfo).filter(UserInfo.is_authorized.is_(False)).count()

    def add_signup(self, username: str, hashed: bytes) -> None:
        """Record a sign-up (its password hashed already); approved at once with open sign-up."""
        username = self.normalize_username(username)
        self.db.add(UserInfo(username=username, password=hashed,
                             is_authorized=bool(self.open_signup or username in self.admin_users)))
        self.db.commit()

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
        ours = {r"/login": SpeckleLoginHandler, r"/signup": SpeckleSignUpHandler,
                r"/authorize/([^/]*)": SpeckleToggleAuthorizationHandler,
                r"/discard/([^/]*)": SpeckleDiscardHandler}
        return [(pattern, ours.get(pattern, handler)) for pattern, handler in super().get_handlers(app)]


def _note(handler, text: str) -> None:
    """What the login page says instead of "Invalid username or password"."""
    if handler is not None:
        handler.speckle_login_note = text
