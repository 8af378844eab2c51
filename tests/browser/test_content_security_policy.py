"""The Content-Security-Policy in a real browser: markup injected into a page cannot run,
and the suite notices every violation (tests/browser/conftest.py fails the test that saw
one), so that a new inline handler or style= cannot slip into a template unnoticed."""

from __future__ import annotations

from tests.browser.conftest import CSP_VIOLATION_PREFIX

INJECTED = """() => document.body.insertAdjacentHTML("beforeend",
  '<button id="injected" onclick="window.injectedRan = true">x</button>'
  + '<p id="styled" style="color: rgb(255, 0, 0)">x</p>')"""


def test_an_injected_inline_handler_and_style_are_blocked_and_reported(open_page):
    page = open_page()
    page.goto("/login/")
    page.evaluate(INJECTED)
    page.click("#injected")
    assert page.evaluate("window.injectedRan") is None
    assert page.eval_on_selector("#styled", "e => getComputedStyle(e).color") != "rgb(255, 0, 0)"
    # The violation events arrive a moment after the markup and the click.
    for _ in range(50):
        reported = " ".join(m for m in page.console_messages if m.startswith(CSP_VIOLATION_PREFIX))
        if "script-src" in reported and "style-src" in reported:
            break
        page.wait_for_timeout(100)
    assert "script-src" in reported and "style-src" in reported, page.console_messages
    # Seen and expected here; any other test that sees one fails.
    page.console_messages.clear()
