"""The dashboards in a real browser (issue 14): headless Chromium driven by
Selenium loads the hub's dashboard, sees a bridge appear when a node
connects and its traffic grow while curl downloads through it, uses the
create and remove actions, fits a narrow window; loads the node's
dashboard, opens a request in the inspector, replays it and sees the
upstream receive it again.

Chromium starts once per session (the `browser` fixture). Screenshots go
to a folder under pytest's tmp dir; its path is printed (pytest -s shows
it, and so does a failure's captured output)."""

import os
import shutil
import subprocess
import time

import pytest

from dash_support import RecordingUpstream, wait_until
from helpers import find_binary, scaled
from tunnel_x_support import http_get


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = find_binary(name)
        if p:
            return p
    return None


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("python3-selenium not installed (scripts/setup.sh "
                    "installs it)")
    chrome, driver = _chromium(), find_binary("chromedriver")
    if chrome is None or driver is None:
        pytest.skip("chromium or chromium-driver not installed "
                    "(scripts/setup.sh installs them)")
    shots = tmp_path_factory.mktemp("dashboard-screenshots")
    profile = tmp_path_factory.mktemp("chromium-profile")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu",
              "--disable-dev-shm-usage", "--no-first-run",
              "--disable-extensions", "--disable-background-networking",
              "--window-size=1280,900", "--user-data-dir=%s" % profile):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(driver), options=opts)
    d.set_page_load_timeout(scaled(30))
    d.shots = str(shots)
    print("\ndashboard screenshots in %s" % shots)
    yield d
    d.quit()


def shot(d, name):
    path = os.path.join(d.shots, name + ".png")
    d.save_screenshot(path)
    print("screenshot: %s" % path)
    return path


def js_errors(d):
    """Console errors of the page (a failed script would show here)."""
    return [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]


# The dashboard rebuilds its cells every second: read them in one script
# (no stale element between finding and reading), click with a retry.

def text(d, css):
    return d.execute_script(
        "const e = document.querySelector(arguments[0]);"
        "return e ? e.textContent : null;", css)


def attr_int(d, css, name):
    v = d.execute_script(
        "const e = document.querySelector(arguments[0]);"
        "return e ? e.getAttribute(arguments[1]) : null;", css, name)
    return int(v) if v is not None and v.isdigit() else None


def texts(d, css):
    return d.execute_script(
        "return [...document.querySelectorAll(arguments[0])]"
        ".map(e => e.textContent);", css)


def click(d, css, match=None):
    """Clicks the first element of css (whose text contains match)."""
    from selenium.common.exceptions import StaleElementReferenceException

    def attempt():
        try:
            for e in d.find_elements("css selector", css):
                if match is None or match in e.text:
                    e.click()
                    return True
        except StaleElementReferenceException:
            pass
        return False
    wait_until(attempt, 10, "a click on %s %s" % (css, match or ""))


@pytest.fixture
def upstream(env):
    u = RecordingUpstream()
    env.others.append(u)
    return u


def test_hub_dashboard_live(browser, env, upstream):
    d = browser
    hub = env.hub()
    d.set_window_size(1280, 900)
    d.get("http://127.0.0.1:%d/" % hub.api_port)
    wait_until(lambda: text(d, "#live") == "live", 15, "the live feed")
    assert d.find_element("id", "empty").is_displayed()
    shot(d, "hub-1-empty")

    # a bridge connects: its allocation appears, live
    node = env.node(hub, upstream.url)
    row = 'tr[data-id="%s"]' % node.identity
    wait_until(lambda: (text(d, row + " .state") or "").startswith("live"),
               15, "the bridge's row, live")
    assert not d.find_element("id", "empty").is_displayed()
    shot(d, "hub-2-bridge")

    # a download through it: the user traffic counter grows while it runs
    # (big enough that socket buffers, a few MB on loopback, cannot take
    # it at once: the hub counts what it has written)
    size = 64000000  # ~30 s at 2 MB/s: more than the buffers on the way hold
    curl = subprocess.Popen(
        ["curl", "-sS", "-o", os.devnull, "--limit-rate", "2M",
         "-H", "Host: " + hub.host(node.identity),
         "http://127.0.0.1:%d/big?bytes=%d" % (hub.port, size)],
        stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        seen, growing = [], False
        deadline = time.monotonic() + scaled(40)
        while time.monotonic() < deadline and not growing:
            v = attr_int(d, row + " .t-user .down", "data-bytes")
            if v and (not seen or v > seen[-1]):
                seen.append(v)
            growing = len(seen) >= 3 and curl.poll() is None
            time.sleep(0.2)
        assert growing, ("the counter did not grow in steps during the "
                         "download: %r" % seen)
        wait_until(lambda: not (text(d, row + " .bw .down") or
                                "↓ 0 B/s").startswith("↓ 0 B/s"), 15,
                   "a bandwidth above zero")
        shot(d, "hub-3-traffic")
        assert curl.wait(scaled(60)) == 0, curl.stderr.read()
    finally:
        if curl.poll() is None:
            curl.kill()
            curl.wait()
    wait_until(lambda: (attr_int(d, row + " .t-user .down", "data-bytes")
                        or 0) >= size, 15, "the whole download counted")

    # actions: create (the password shown once), then remove
    rows_js = ("return [...document.querySelectorAll('#items tbody tr')]"
               ".map(r => r.dataset.id);")
    before = set(d.execute_script(rows_js))
    d.find_element("id", "create-traffic").send_keys("1000000")
    d.find_element("css selector", "#create-form button").click()
    wait_until(lambda: d.find_element("id", "secret").is_displayed(), 20,
               "the new allocation's password")
    creds = d.find_element("id", "secret-list").text
    assert "password" in creds
    shot(d, "hub-4-created")

    def new_row():
        extra = set(d.execute_script(rows_js)) - before
        return extra.pop() if extra else None
    new = wait_until(new_row, 15, "the created allocation's row")
    assert "1.00 MB" in text(d, 'tr[data-id="%s"]' % new)
    d.find_element("id", "secret-close").click()
    # rotate its password: the new one is shown once
    click(d, 'tr[data-id="%s"] button.secondary' % new, "Rotate")
    d.switch_to.alert.accept()
    wait_until(lambda: d.find_element("id", "secret").is_displayed() and
               "New password of " + new in text(d, "#secret-h"), 20,
               "the rotated password")
    assert "password" in d.find_element("id", "secret-list").text
    d.find_element("id", "secret-close").click()
    click(d, 'tr[data-id="%s"] button.danger' % new)
    d.switch_to.alert.accept()
    wait_until(lambda: text(d, 'tr[data-id="%s"]' % new) is None, 15,
               "the row removed")
    st, _, _ = http_get(hub.port, hub.host(node.identity), "/still")
    assert st == 200

    # a narrow window: rows become cards, nothing scrolls sideways
    d.set_window_size(400, 900)
    wait_until(lambda: d.execute_script(
        "return document.documentElement.scrollWidth <= "
        "window.innerWidth + 1"), 10, "no horizontal scrolling")
    display = d.execute_script(
        "return getComputedStyle(document.querySelector("
        "'#items tbody td')).display")
    assert display != "table-cell", display
    shot(d, "hub-5-narrow")
    d.set_window_size(1280, 900)

    # accessible: every control has a label or a name; the skip link
    # comes first in keyboard order
    assert d.execute_script(
        "return [...document.querySelectorAll('input, select')]"
        ".every(e => e.labels && e.labels.length > 0)")
    assert d.execute_script(
        "return [...document.querySelectorAll('button')]"
        ".every(b => (b.getAttribute('aria-label') || b.textContent)"
        ".trim().length > 0)")
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    d.refresh()
    wait_until(lambda: text(d, "#live") == "live", 15, "the live feed")
    ActionChains(d).send_keys(Keys.TAB).perform()
    assert d.execute_script(
        "return document.activeElement.className") == "skip"
    assert not js_errors(d), js_errors(d)


def test_node_dashboard_inspector_replay(browser, env, upstream):
    d = browser
    hub = env.hub()
    node = env.node(hub, upstream.url)
    host = hub.host(node.identity)
    st, _, _ = http_get(hub.port, host, "/orders", method="POST",
                        body=b'{"order": 7}',
                        headers={"Content-Type": "application/json",
                                 "Authorization": "Bearer not-for-the-page"})
    assert st == 200
    d.set_window_size(1280, 1000)
    d.get("http://127.0.0.1:%d/" % node.api_port)
    wait_until(lambda: text(d, "#live") == "live", 15, "the live feed")
    wait_until(lambda: (text(d, 'tr[data-id="%s"] .state' % node.identity)
                        or "").startswith("connected"), 15,
               "the bridge's row")
    sel = "#requests tbody tr button"
    wait_until(lambda: any("POST /orders" in t for t in texts(d, sel)), 15,
               "the request in the inspector")
    # a request made while the page is open appears by itself
    assert http_get(hub.port, host, "/later")[0] == 200
    wait_until(lambda: any("GET /later" in t for t in texts(d, sel)), 15,
               "a new request listed live")
    click(d, sel, "POST /orders")
    wait_until(lambda: d.find_element("id", "detail").is_displayed(), 10,
               "the request's detail")
    head = d.find_element("id", "req-head").text
    assert "POST /orders HTTP/1.1" in head
    assert "Authorization: [redacted]" in head
    assert "not-for-the-page" not in d.page_source
    assert '{"order": 7}' in d.find_element("id", "req-body").text
    shot(d, "node-1-inspector")

    before = [s for s in upstream.seen if s["path"] == "/orders"]
    assert len(before) == 1
    click(d, "#replay")
    wait_until(lambda: (text(d, "#replay-result") or "").startswith(
        "replayed: 200"), 20, "the replay's answer")
    after = [s for s in upstream.seen if s["path"] == "/orders"]
    assert len(after) == 2
    assert after[1]["method"] == "POST" and after[1]["body"] == b'{"order": 7}'
    assert "Authorization" not in after[1]["headers"]
    wait_until(lambda: any("replay" in t for t in texts(
        d, "#requests tbody tr")), 15, "the replay listed")
    shot(d, "node-2-replayed")
    assert not js_errors(d), js_errors(d)
