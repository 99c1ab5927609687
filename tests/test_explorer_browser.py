"""GraphiQL in a real browser, with nothing reachable but this server: headless Chromium
(Debian's `chromium` and `chromium-driver`, driven by Selenium) opens the page of a
`serve --demo` server, a query typed into the editor runs with the demo key from the Headers
tab, the result pane shows the demo sessions, and a subscription started from the page
receives an event appended meanwhile. Screenshots go to test-artifacts/ (or
$SESSIONGRAPH_TEST_ARTIFACTS). Skipped where no Chromium is installed, except in CI."""

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.live_server import live_server

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ARTIFACTS = Path(os.environ.get("SESSIONGRAPH_TEST_ARTIFACTS") or Path(__file__).parent.parent / "test-artifacts")
DEMO_TITLES = {"Trip planning", "Quarterly report", "Bug triage", "Recipe ideas", "SQL help", "Contract review", "prod-db shell", "cleanup on web-1", "cleanup on reports", "Nightly red-team run"}
QUERY = "{ sessions(first: 10) { totalCount nodes { title turnCount } } }"

if not (CHROMIUM and CHROMEDRIVER):
    reason = "no Chromium here: apt-get install chromium chromium-driver"
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser test must run in CI, but there is {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def demo_server():
    with tempfile.TemporaryDirectory() as directory:
        with live_server(f"sqlite+aiosqlite:///{directory}/demo.db", "--demo") as server:
            [key] = re.findall(r"^API key: (\S+)", server.log(), re.MULTILINE)
            yield server, key


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,900",
        # Nothing but this machine: every name resolves to nothing, and every request that is
        # not to loopback goes to a proxy that is not there.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ):
        options.add_argument(argument)
    # The driver Debian installed: Selenium would otherwise look for (download) one of its own.
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def editor_text(driver, selector: str) -> str:
    return driver.execute_script(f"return document.querySelector({json.dumps(selector + ' .CodeMirror')}).CodeMirror.getValue()")


def result_json(driver):
    text = editor_text(driver, ".graphiql-response")
    try:
        return json.loads(text)
    except ValueError:
        return None


def run_editor(driver) -> None:
    driver.find_element(By.CSS_SELECTOR, ".graphiql-execute-button").click()


def run_subscription(driver) -> None:
    """Runs the editor's subscription. GraphiQL decides between HTTP and the WebSocket from
    the document it parsed last, which lags the typed text (a debounce): on a slow machine
    the first run can still see the previous query and POST the subscription, which the
    server refuses. Then it is run again, once GraphiQL has caught up."""
    for _ in range(5):
        time.sleep(1)
        run_editor(driver)
        time.sleep(1)
        refused = (result_json(driver) or {}).get("errors") or []
        if not any("Only queries and mutations" in e.get("message", "") for e in refused):
            return
    raise AssertionError(f"GraphiQL sent the subscription over HTTP every time: {refused}")


def type_query(driver, query: str) -> None:
    editor = driver.find_element(By.CSS_SELECTOR, ".graphiql-query-editor .CodeMirror")
    editor.click()
    field = editor.find_element(By.CSS_SELECTOR, "textarea")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)
    field.send_keys(query)
    field.send_keys(Keys.ESCAPE)  # closes the autocompletion list


def screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path


def test_graphiql_runs_queries_and_subscriptions_offline(demo_server, browser):
    server, key = demo_server
    base = server.url.removesuffix("/graphql")
    browser.get(server.url)
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".graphiql-query-editor .CodeMirror"))

    # A demo server: its key is in the Headers tab, and a first query in the editor.
    assert json.loads(editor_text(browser, ".graphiql-editor-tool .graphiql-editor:not(.hidden)")) == {"X-API-Key": key}
    assert "sessions(first: 5)" in editor_text(browser, ".graphiql-query-editor")

    type_query(browser, QUERY)
    assert re.sub(r"\s+", "", editor_text(browser, ".graphiql-query-editor")) == re.sub(r"\s+", "", QUERY)
    run_editor(browser)
    wait.until(lambda d: (result_json(d) or {}).get("data"))
    sessions = result_json(browser)["data"]["sessions"]
    assert sessions["totalCount"] == len(DEMO_TITLES)
    assert {node["title"] for node in sessions["nodes"]} == DEMO_TITLES
    shown = screenshot(browser, "graphiql-query.png")
    assert shown.stat().st_size > 10_000

    # Everything the page loaded came from this server.
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(url.startswith(base + "/") for url in loaded), loaded

    # A subscription from the page, then an event appended over HTTP: it shows up in the result
    # pane. afterSeq is the stored last seq, so the event arrives whether it is written before
    # or after the subscription starts.
    headers = {"X-API-Key": key}
    last = httpx.post(server.url, headers=headers, json={"query": '{ session(id: "chat-1") { events(last: 1) { nodes { seq } } } }'}).json()
    after = last["data"]["session"]["events"]["nodes"][0]["seq"]
    type_query(browser, f'subscription {{ sessionEvents(sessionId: "chat-1", afterSeq: {after}) {{ seq message }} }}')
    run_subscription(browser)
    message = f"appended while GraphiQL watched {time.time()}"
    appended = httpx.post(
        server.url,
        headers=headers,
        json={
            "query": "mutation($m: String) { appendEvents(input: {sessionId: \"chat-1\", events: [{type: \"LLM_OUTPUT\", message: $m}]}) { events { seq } } }",
            "variables": {"m": message},
        },
    ).json()
    seq = appended["data"]["appendEvents"]["events"][0]["seq"]
    # The event, or an error: whichever the pane shows first (a loaded machine: up to 60 s).
    shown = lambda d: (r := result_json(d) or {}).get("errors") or "sessionEvents" in (r.get("data") or {})  # noqa: E731
    WebDriverWait(browser, 60).until(shown, message=f"no event in the result pane: {editor_text(browser, '.graphiql-response')!r}")
    assert result_json(browser).get("data") == {"sessionEvents": {"seq": seq, "message": message}}, result_json(browser)
    screenshot(browser, "graphiql-subscription.png")
