"""The playground in a real browser (Debian's chromium, driven by Playwright)
against a real ``tvm start``: load it, pick Python, type a program, Run, read
the output and the figures; an interactive run typed into the terminal; a C
compile error; a test case with a wrong answer; a shared link; API keys.
Screenshots go to ``test-artifacts/playground/``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO, Server, own_database, require_languages
from tvm.config.settings import Settings

pytestmark = pytest.mark.namespace

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts" / "playground"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        # Playwright gives every launch a fresh temporary profile (--user-data-dir).
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    require_languages(Settings(), "python@3.11.2", "c@12.2.0")
    tmp = tmp_path_factory.mktemp("playground")
    srv = Server(tmp, env=own_database(tmp))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def page(browser: Any, site: Server) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto(site.url + "/")
    tab.wait_for_selector("body[data-ready=true]", timeout=20000)
    try:
        yield tab
    finally:
        context.close()
    assert not errors, f"the page threw: {errors}"


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def pick(page: Any, language: str, version: str) -> None:
    page.select_option("#language", language)
    page.select_option("#version", version)


def type_program(page: Any, source: str) -> None:
    page.click(".cm-content")
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(source)


def figure(page: Any, scope: str, name: str) -> str:
    text: str = page.locator(f"{scope} dt:text-is('{name}') + dd").inner_text()
    return text


def test_page_loads_offline_with_the_catalog(page: Any, site: Server) -> None:
    options = page.locator("#language option").all_inner_texts()
    assert "python" in options and "c" in options
    assert page.locator("#version").input_value()  # newest python preselected
    assert "Hello" in page.locator(".cm-content").inner_text()
    # Every file the page loaded came from the server itself.
    html = httpx.get(site.url + "/").text
    assert "http://" not in html.replace(site.url, "") and "https://" not in html
    for label in ("Language", "Version", "Standard input", "API key"):
        assert page.get_by_label(label, exact=True).count() == 1, label


def test_run_python_and_read_output_and_figures(page: Any) -> None:
    pick(page, "python", "3.11.2")
    type_program(page, "import sys\nname = sys.stdin.readline().strip()\nprint('Hello,', name)\n")
    page.fill("#stdin", "Grace\n")
    page.fill("#args", "")
    page.click("#run")
    page.wait_for_selector("#result .stage.run", timeout=60000)
    assert page.locator("#result .run .stdout pre").inner_text().rstrip() == "Hello, Grace"
    assert figure(page, "#result .run", "Status") == "OK"
    assert figure(page, "#result .run", "Exit") == "0"
    assert figure(page, "#result .run", "Wall time").endswith(" ms")
    assert figure(page, "#result .run", "Memory").endswith(" MB")
    assert "Finished: ok" in page.locator("#status").inner_text()
    shot(page, "run-python")


def test_interactive_run_typed_into_the_terminal(page: Any) -> None:
    pick(page, "python", "3.11.2")
    type_program(page, "name = input('name? ')\nprint('hi ' + name)\n")
    page.click("#interactive")
    rows = page.locator("#terminal .xterm-rows")
    rows.get_by_text("name?").wait_for(timeout=60000)
    page.click("#terminal")
    page.keyboard.type("Ada")
    page.keyboard.press("Enter")
    rows.get_by_text("hi Ada").wait_for(timeout=30000)
    page.wait_for_selector("#result .stage.run", timeout=30000)
    assert figure(page, "#result .run", "Exit") == "0"
    shot(page, "interactive-python")


def test_c_compile_error_is_shown_as_such(page: Any) -> None:
    pick(page, "c", "12.2.0")
    type_program(page, "int main(void) { return missing; }\n")
    page.click("#run")
    page.wait_for_selector("#result .stage.compile", timeout=60000)
    assert page.locator("#result h2 .badge").inner_text() == "Compile error"
    assert page.locator("#result .compile h3").inner_text() == "Compile error"
    assert figure(page, "#result .compile", "Status") == "Compile error"
    assert "missing" in page.locator("#result .compile .stderr pre").inner_text()
    assert page.locator("#result .stage.run").count() == 0
    shot(page, "c-compile-error")


def test_wrong_answer_test_case_is_shown_as_such(page: Any) -> None:
    pick(page, "c", "12.2.0")
    type_program(
        page,
        '#include <stdio.h>\nint main(void){int a,b;scanf("%d %d",&a,&b);printf("%d\\n",a+b);return 0;}\n',
    )
    page.click("#tests-box summary")  # open "Tests: compile once, run many"
    page.click("#add-test")
    page.click("#add-test")
    page.fill("#test-1-stdin", "1 2")
    page.fill("#test-1-expected", "3")
    page.fill("#test-2-stdin", "2 2")
    page.fill("#test-2-expected", "5")
    page.click("#run-tests")
    page.wait_for_selector("#result .tests-table tbody tr", timeout=90000)
    verdicts = page.locator("#result .tests-table td.verdict").all_inner_texts()
    assert verdicts == ["Accepted", "Wrong answer"]
    actual = page.locator("#result .tests-table tbody tr").nth(1).locator("td").nth(4)
    assert actual.inner_text().strip() == "4"
    assert "1 of 2 accepted" in page.locator("#status").inner_text()
    assert page.locator("#result h2 .badge").inner_text() == "1 of 2 accepted"
    shot(page, "tests-wrong-answer")


def test_shared_link_carries_the_program(page: Any, browser: Any) -> None:
    pick(page, "python", "3.11.2")
    type_program(page, "print('shared ' * 2)\n")
    page.fill("#stdin", "some input")
    page.click("#share")
    page.wait_for_function("location.hash.startsWith('#p=')")
    link = page.evaluate("location.href")
    other = browser.new_page()
    try:
        other.goto(link)
        other.wait_for_selector("body[data-ready=true]", timeout=20000)
        assert "print('shared ' * 2)" in other.locator(".cm-content").inner_text()
        assert other.locator("#stdin").input_value() == "some input"
        assert other.locator("#version").input_value() == "3.11.2"
    finally:
        other.close()


@pytest.fixture(scope="module")
def keyed_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    require_languages(Settings(), "python@3.11.2")
    tmp = tmp_path_factory.mktemp("keyed-playground")
    env = {"TVM_AUTH_REQUIRED": "true", "TVM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/db"}
    made = subprocess.run([sys.executable, "-m", "tvm.cli", "keys", "create", "browser"],
                          env={**os.environ, **env}, capture_output=True, text=True, check=True)  # fmt: skip
    srv = Server(tmp, env=env)
    try:
        yield srv, made.stdout.split()[-1]
    finally:
        srv.stop()


def test_with_api_keys_on(browser: Any, keyed_site: tuple[Server, str]) -> None:
    srv, secret = keyed_site
    tab = browser.new_page()
    try:
        tab.goto(srv.url + "/")
        tab.get_by_text("needs an API key").wait_for(timeout=20000)
        tab.fill("#api-key", secret)
        tab.dispatch_event("#api-key", "change")
        tab.wait_for_selector("#language option[value=python]", state="attached", timeout=20000)
        pick(tab, "python", "3.11.2")
        type_program(tab, "print(6 * 7)\n")
        tab.click("#run")
        tab.wait_for_selector("#result .stage.run", timeout=60000)
        assert tab.locator("#result .run .stdout pre").inner_text().rstrip() == "42"
        tab.click("#interactive")
        tab.locator("#terminal .xterm-rows").get_by_text("42").wait_for(timeout=60000)
        shot(tab, "api-key")
    finally:
        tab.close()
