"""A person's first steps in a real browser: the login form, then the landing page."""

import time


def test_login_through_the_form_reaches_the_landing_page(speckle_hub, browser, browser_login, artifacts):
    user = speckle_hub.new_user("p")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    failed = []
    page.on("requestfailed", lambda req: failed.append(req.url))
    try:
        t0 = time.monotonic()
        page.goto(speckle_hub.url + "hub/home")  # anonymous: sent to the login form
        assert "/hub/login" in page.url
        assert page.is_visible("#signup-hint")
        browser_login(page, speckle_hub, user)
        elapsed = time.monotonic() - t0
        page.wait_for_selector("#tile-xpcs_quick_check")
        assert page.title() == "speckle hub"
        assert page.is_visible("#tile-jupyterlab") and page.is_visible("#tile-data_browser")
        assert page.inner_text("#login_widget").strip().startswith(user.name)
        page.screenshot(path=str(artifacts / "hub-landing.png"), full_page=True)
        assert elapsed < 15
        assert not [u for u in failed if not u.startswith(speckle_hub.url)], failed
        page.goto(speckle_hub.url + "hub/spawn")
        page.wait_for_selector("#profile-quick")
        assert page.is_checked("#profile-quick")
        page.screenshot(path=str(artifacts / "hub-spawn-form.png"), full_page=True)
    finally:
        context.close()


def test_login_page_screenshot_and_wrong_password(speckle_hub, browser, artifacts):
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    try:
        page.goto(speckle_hub.url + "hub/signup")
        page.wait_for_selector("#signup_submit")
        page.screenshot(path=str(artifacts / "hub-signup.png"))
        page.goto(speckle_hub.url + "hub/login")
        page.screenshot(path=str(artifacts / "hub-login.png"))
        page.fill("#username_input", "nobody")
        page.fill("#password_input", "not-the-password")
        page.click("#login_submit")
        page.wait_for_selector(".login_error")
        assert "Invalid username or password" in page.inner_text(".login_error")
    finally:
        page.close()
