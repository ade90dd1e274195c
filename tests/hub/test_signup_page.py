"""The sign-up page's template (hub_config/speckle_hub/templates/signup.html) and when it warns
about plain HTTP: rendered with Jinja over a stand-in for JupyterHub's base page, no hub needed.
The page in a real browser on the real hub: tests/hub/test_hub_browser.py."""

from __future__ import annotations

import jinja2
import pytest
from speckle_hub.pages import insecure_http
from speckle_hub.settings import TEMPLATES


@pytest.mark.parametrize("address, tls, warn", [
    ("127.0.0.1", False, False), ("::1", False, False), ("localhost", False, False),
    ("127.0.0.5", False, False),
    ("10.0.5.20", False, True), ("0.0.0.0", False, True), ("", False, True),
    ("beamline-server.example.org", False, True), ("::", False, True),
    ("10.0.5.20", True, False), ("0.0.0.0", True, False),
])
def test_plain_http_is_a_warning_only_off_loopback_and_without_tls(address, tls, warn):
    hub = {"bind_address": address, "tls": {"cert": "/etc/hub.crt" if tls else None,
                                            "key": "/etc/hub.key" if tls else None}}
    assert insecure_http(hub) is warn


def _render(**context) -> str:
    env = jinja2.Environment(loader=jinja2.ChoiceLoader([
        jinja2.FileSystemLoader(str(TEMPLATES)),
        # JupyterHub's own page.html, reduced to the blocks the sign-up page fills
        jinja2.DictLoader({"templates/page.html":
                           "<title>{% block title %}{% endblock %}</title>"
                           "{% block main %}{% endblock %}{% block script %}{% endblock %}"}),
    ]), autoescape=True)
    return env.get_template("signup.html").render(base_url="/hub/", xsrf="token", **context)


def test_the_form_posts_what_the_authenticator_reads():
    page = _render(speckle_insecure_http=False)
    assert "<title>speckle hub</title>" in page
    assert 'action="/hub/signup"' in page and 'name="_xsrf" value="token"' in page
    for name in ("username", "signup_password", "signup_password_confirmation"):
        assert f'name="{name}"' in page
    assert 'id="signup_submit"' in page and 'href="/hub/login"' in page
    assert "insecure" not in page and "HTTP" not in page
    assert 'name="email"' not in page and "recaptcha" not in page  # only when configured


def test_the_warning_and_the_authenticators_answer():
    page = _render(speckle_insecure_http=True, alert="alert-info",
                   result_message="Your information has been sent to the admin.",
                   ask_email=True)
    assert 'id="insecure-signup-warning"' in page and "plain HTTP" in page
    assert 'class="alert alert-info"' in page and "sent to the admin" in page
    assert 'name="email"' in page
