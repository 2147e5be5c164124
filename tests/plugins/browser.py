"""Headless Chromium via Playwright's sync API: `browser` (session) and `page` (per test)."""

import os
from pathlib import Path

import pytest

# Playwright's sync API runs an asyncio loop in this thread; Django refuses ORM calls from a
# thread with a running loop unless told it is safe (tests only, one thread).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        # Fail, never skip: CI must not go green without the browser tests.
        pytest.fail(
            f"Chromium not found at {CHROMIUM}. Install it (apt-get install chromium) "
            "or set CHROMIUM_PATH."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


# Chromium logs each refused load or inline script as "Refused to … because it violates the
# following Content Security Policy directive …"; the page's securitypolicyviolation events
# are logged too, in case a violation is not.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", function (event) {
  console.error("Content Security Policy violation: " + event.effectiveDirective + " " +
                event.blockedURI);
});
"""


@pytest.fixture
def csp_violations(page):
    """Every Content-Security-Policy violation the page (and its popups) logs, as text."""
    seen: list[str] = []

    def record(message) -> None:
        if "Content Security Policy" in message.text:
            seen.append(message.text)

    page.context.add_init_script(CSP_LISTENER)
    page.context.on("page", lambda popup: popup.on("console", record))
    page.on("console", record)
    return seen
