"""Browser tests: Debian's Chromium driven by Playwright (never `playwright install`),
the real app on a free port (``live_server``), axe-core (vendored, see
console/vendor.json) run in every page, and a screenshot of each screen saved under
``build/screenshots/`` (CONSOLE_SCREENSHOTS to change it; not committed)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from console import users
from crm.db import db
from crm.demo import load_demo

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
SCREENSHOTS = Path(os.environ.get("CONSOLE_SCREENSHOTS",
                                  Path(__file__).resolve().parents[2] / "build" / "screenshots"))
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]
PASSWORD = "correct horse battery staple"
ROLES = ("viewer", "marketer", "admin")


def fresh() -> None:
    """The test's next reads see what requests committed meanwhile."""
    db.session.rollback()
    db.session.expire_all()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (see .ci/run)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def demo(factory: Any) -> dict[str, Any]:
    """The demo data (40 customers) and one console user per role, password PASSWORD."""
    db.session.rollback()
    load_demo(40)
    for role in ROLES:
        users.set_password(users.by_email(f"{role}@demo.example.com"), PASSWORD)
    db.session.commit()
    return {"emails": {r: f"{r}@demo.example.com" for r in ROLES}}


class Screen:
    """A page in its own browser context, with the checks every screen gets."""

    def __init__(self, page: Any, base: str) -> None:
        self.page, self.base = page, base
        self.errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def go(self, path: str) -> Any:
        return self.page.goto(self.base + path)

    def sign_in(self, email: str, password: str = PASSWORD) -> None:
        self.go("/console/login")
        self.page.get_by_label("Email").fill(email)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_load_state()

    def check(self, name: str, status: int | None = None) -> None:
        """No WCAG 2.2 A/AA violation (axe-core), no script or CSP error; a screenshot.
        ``status``: the page itself answered that error status (logged by Chromium)."""
        self.page.wait_for_load_state("networkidle")
        self.page.evaluate(AXE.read_text())
        result = self.page.evaluate(
            "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG)
        violations = [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3])
                      for v in result["violations"]]
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
        assert violations == [], f"{name}: {violations}"
        own = f"the server responded with a status of {status}"
        errors = [e for e in self.errors if not (status and own in e)]
        if any(e.startswith("htmx:sendAbort") for e in errors):
            # A request replaced by a newer one (hx-sync "replace") is aborted by design;
            # htmx logs the abort and its afterRequest as errors.
            errors = [e for e in errors
                      if not e.startswith(("htmx:sendAbort", "htmx:afterRequest"))]
        assert errors == [], f"{name}: {errors}"
        self.errors.clear()


@pytest.fixture
def screen(browser: Any, live_server: str) -> Iterator[Callable[..., Screen]]:
    contexts = []

    def open_screen(role: str | None = None, **options: Any) -> Screen:
        options.setdefault("viewport", {"width": 1280, "height": 900})
        context = browser.new_context(**options)
        contexts.append(context)
        context.set_default_timeout(10_000)
        s = Screen(context.new_page(), live_server)
        if role:
            s.sign_in(f"{role}@demo.example.com")
        return s

    yield open_screen
    for context in contexts:
        context.close()
