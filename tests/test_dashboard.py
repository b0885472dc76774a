"""The dashboard in Debian's Chromium, against real processes: Redis, the gateway, and (for
the full flow) the WeChat simulator with the login and notifier services.

Unit-level tests feed the events stream by XADD, as the login service and the notifier do;
the full-stack test drives everything through the simulator and the demo phone page.
Screenshots of each state land in ``artifacts/screenshots/``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import httpx
import pytest
import redis
from dashboard_stack import (
    SCREENSHOTS,
    Dashboard,
    GatewaySlot,
    Stack,
    chat_message,
    dashboard,
    expired_token,
    launch,
    stream_status,
)
from gateway_fixtures import SECRET
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright
from procs import REPO, wait_for

from shared.events import (
    ConfirmLogin,
    LoggedIn,
    LoggedOut,
    LoginError,
    Notification,
    ScanQrCode,
    User,
)
from shared.keys import Keys
from tools.wechat_sim import SimServer
from tools.wechat_sim.media import avatar_data_url, solid_png

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True}
USER = User(id="@me", name="小明 🐱", avatar=avatar_data_url())
# Counts EventSources a page holds open: the page must never hold more than one.
COUNT_EVENT_SOURCES = """
(() => {
  const Native = window.EventSource;
  window.__sources = [];
  window.EventSource = class extends Native {
    constructor(...args) { super(...args); window.__sources.push(this); }
  };
  window.__openSources = () => window.__sources.filter((s) => s.readyState !== 2).length;
})();
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def stack(redis_url: str, keys: Keys, rclient: redis.Redis, tmp_path: Path) -> Iterator[Stack]:
    """A gateway slot (not started) on the test's Redis and account."""
    slot = GatewaySlot(
        {"WX_REDIS_URL": redis_url, "WX_ACCOUNT": keys.account, "WX_RETRY_JITTER_MS": "500"},
        tmp_path,
    )
    rig = Stack(redis_url, keys, rclient, tmp_path, slot)
    yield rig
    rig.close()


def signed_in(d: Dashboard) -> None:
    d.open()
    d.view("signin")
    d.sign_in()
    expect(d.page.locator("#sign-out")).to_be_visible()


def tab_to(page: Page, selector: str, presses: int = 12) -> None:
    """Reach ``selector`` with the Tab key alone."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement === document.querySelector(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


# --- sign-in and refusals ----------------------------------------------------------------


def test_wrong_secret_then_rate_limit_are_shown_plainly(browser: Browser, stack: Stack) -> None:
    stack.gateway.start(WX_SIGN_IN_ATTEMPTS_PER_MINUTE="2")
    with dashboard(browser, stack.gateway.url) as d:
        d.open()
        d.view("signin")
        d.connection("signed_out")
        for _ in range(2):
            with d.page.expect_response("**/api/session") as answer:
                d.sign_in("not-the-secret")
            assert answer.value.status == 401
            expect(d.page.locator("#signin-error")).to_have_text(re.compile("Wrong secret"))
        d.shot("signin-wrong-secret")
        with d.page.expect_response("**/api/session") as answer:
            d.sign_in("still-not-it")
        assert answer.value.status == 429
        retry_after = int(answer.value.headers["retry-after"])
        expect(d.page.locator("#signin-error")).to_have_text(
            f"Too many failed sign-ins. Try again in {retry_after} s."
        )
        expect(d.page.locator("#secret")).to_have_attribute("aria-invalid", "true")
        d.shot("signin-rate-limited")
        d.view("signin")
        d.assert_clean((429, "/api/session"))


def test_stream_and_api_without_session_are_refused(browser: Browser, stack: Stack) -> None:
    gw = stack.gateway.start()
    assert stream_status(gw.url) == (401, json.dumps({"error": "sign in first: no valid session"}))
    assert stream_status(gw.url, expired_token())[0] == 401
    state = httpx.get(f"{gw.url}/api/state")
    assert (state.status_code, state.json()["status"]) == (401, 401)
    with dashboard(browser, gw.url) as d:
        # A browser sent straight to the stream gets the refusal, in words.
        answer = d.page.goto(f"{gw.url}/stream")
        assert answer is not None
        assert answer.status == 401
        expect(d.page.locator("body")).to_contain_text("sign in first: no valid session")
        # The dashboard itself, with no session, asks for the secret.
        d.open()
        d.view("signin")
        d.connection("signed_out")
        expect(d.page.locator("#conn")).to_have_text("signed out")


def test_expired_session_signs_the_page_out(browser: Browser, stack: Stack) -> None:
    gw = stack.gateway.start()
    stack.publish(LoggedIn(user=USER))
    with dashboard(browser, gw.url) as d:
        signed_in(d)
        d.view("main")
        d.connection("live")
        # The session cookie is now one the gateway signed but that has expired.
        expired = expired_token()
        d.context.add_cookies([{"name": "wxstream_session", "value": expired, "url": gw.url}])
        with d.page.expect_response("**/api/notifications/read") as answer:
            d.page.click("#mark-read")
        assert answer.value.status == 401
        d.view("signin")
        d.connection("signed_out")
        expect(d.page.locator("#signin-notice")).to_have_text(
            "Your session has ended: sign in again."
        )
        d.shot("signed-out-expired")
        d.assert_clean((401, "/api/notifications/read"))


def test_revoked_session_stops_the_stream_and_shows_signed_out(
    browser: Browser, stack: Stack
) -> None:
    """A 401 on the stream makes EventSource give up for good: the page must notice."""
    stack.gateway.start(WX_SESSION_KEY="first-session-key-0123456789")
    stack.publish(LoggedIn(user=USER))
    with dashboard(browser, stack.gateway.url) as d:
        d.context.add_init_script(COUNT_EVENT_SOURCES)
        signed_in(d)
        d.view("main")
        d.connection("live")
        # Rotating the key revokes every session; the page's reconnect is answered 401.
        stack.gateway.restart(WX_SESSION_KEY="second-session-key-9876543210")
        d.view("signin")
        d.connection("signed_out")
        expect(d.page.locator("#signin-notice")).to_have_text(
            "Your session has ended: sign in again."
        )
        assert d.page.evaluate("window.__openSources()") == 0
        d.shot("signed-out-revoked")
        d.assert_clean((401, "/stream"))


# --- the pages, fed through the events stream --------------------------------------------


def test_login_view_follows_every_login_event(browser: Browser, stack: Stack) -> None:
    gw = stack.gateway.start()
    qr = base64.b64encode(solid_png(33, (255, 255, 255), (0, 0, 0))).decode()
    with dashboard(browser, gw.url) as d:
        signed_in(d)
        d.view("login")
        d.login_phase("none")
        expect(d.page.locator("#login-status")).to_have_text("Waiting for the login service…")

        stack.publish(ScanQrCode(uuid="uuid-1", extra=qr))
        d.login_phase("scan_qr_code")
        image = d.page.locator("#login-image")
        expect(image).to_have_attribute("src", f"data:image/png;base64,{qr}")
        expect(image).to_have_attribute("data-uuid", "uuid-1")
        stack.publish(ScanQrCode(uuid="uuid-2", extra=qr))  # the first one expired
        expect(image).to_have_attribute("data-uuid", "uuid-2")

        # itchat hands the avatar over as "data:img/jpg;base64,<PNG>"; it must still show.
        avatar = "data:img/jpg;base64," + avatar_data_url().split(",", 1)[1]
        stack.publish(ConfirmLogin(uuid="uuid-2", extra=avatar))
        d.login_phase("confirm_login")
        expect(d.page.locator("#login-status")).to_have_text("Scanned — confirm on your phone.")
        expect(image).to_have_attribute("src", avatar)
        assert d.page.eval_on_selector("#login-image", "img => img.naturalWidth") > 0
        d.shot("login-scanned")

        stack.publish(LoginError(reason="refused", message="ret 1203", retry_in=2))
        d.login_phase("login_error")
        expect(d.page.locator("#login-error")).to_have_text(
            "WeChat refused to log this account in on the web."
        )
        expect(d.page.locator("#login-detail")).to_have_text(
            "ret 1203 Trying again by itself in 2 s."
        )
        expect(image).to_be_hidden()
        d.shot("login-refused")
        stack.publish(LoginError(reason="unreachable", message="connection refused", retry_in=4))
        expect(d.page.locator("#login-error")).to_have_text("WeChat cannot be reached right now.")
        expect(d.page.locator("#relogin")).to_have_text("Try again now")
        d.shot("login-unreachable")

        stack.publish(LoggedOut(uuid="uuid-2", reason="phone_logout"))
        d.login_phase("logged_out")
        expect(d.page.locator("#login-detail")).to_have_text(
            "You logged out of WeChat Web on your phone."
        )
        relogin = d.page.locator("#relogin")
        expect(relogin).to_have_text("Log in again")
        with d.page.expect_response("**/api/relogin") as answer:
            relogin.click()
        assert answer.value.status == 202
        expect(relogin).to_be_disabled()
        commands = cast(list[tuple[str, dict[str, str]]], stack.rclient.xrange(stack.keys.commands))
        assert [fields["event"] for _, fields in commands] == ["relogin"]
        stack.publish(ScanQrCode(uuid="uuid-3", extra=qr))
        expect(image).to_have_attribute("data-uuid", "uuid-3")
        expect(relogin).to_be_hidden()

        # Signing out of the dashboard drops the cookie and the stream.
        with d.page.expect_response("**/api/session") as answer:
            d.page.click("#sign-out")
        assert answer.value.status == 204
        d.view("signin")
        d.connection("signed_out")
        expect(d.page.locator("#signin-notice")).to_have_text("You signed out.")
        assert [c for c in d.context.cookies() if c["name"] == "wxstream_session"] == []
        d.assert_clean()


def test_messages_live_deduplicated_through_replay_and_reset(
    browser: Browser, stack: Stack
) -> None:
    stack.publish(LoggedIn(user=USER))
    stack.publish(Notification(count=2))
    first = [
        chat_message(1, text="你好 👋 <b>不是标签</b> & 5 > 3"),
        chat_message(
            2, chat="group", chat_id="@@family", chat_name="家人群 👨‍👩‍👧", sender_name="妈妈 ❤️"
        ),
    ]
    for message in first:
        stack.deliver(message)
    gw = stack.gateway.start()
    with dashboard(browser, gw.url, **PHONE) as d:
        d.context.add_init_script(COUNT_EVENT_SOURCES)
        d.open()
        d.view("signin")
        # Keyboard only: Tab to the secret, type it, Enter.
        tab_to(d.page, "#secret")
        d.page.keyboard.type(SECRET)
        d.page.keyboard.press("Enter")
        d.view("main")
        d.connection("live")
        expect(d.page.locator("#account-name")).to_have_text("小明 🐱")
        d.unread(2)
        d.row_count(2)
        assert d.rows() == [first[1].id, first[0].id]
        # Text from messages is text: the markup shows as typed, no element is made of it.
        expect(d.page.locator(f'li[data-id="{first[0].id}"] .msg-text')).to_have_text(
            "你好 👋 <b>不是标签</b> & 5 > 3"
        )
        assert d.page.locator("#messages b").count() == 0
        group = d.page.locator(f'li[data-id="{first[1].id}"]')
        expect(group.locator(".msg-sender")).to_have_text("妈妈 ❤️")
        expect(group.locator(".msg-chat")).to_have_text("家人群 👨‍👩‍👧")

        live = chat_message(3, chat="mp", chat_id="@news", chat_name="腾讯新闻", type="link")
        stack.deliver(live)
        stack.publish(Notification(count=3))
        d.row_count(3)
        d.unread(3)
        stack.deliver(live)  # delivered twice (a producer retry): still one row
        stack.publish(Notification(count=3))
        expect(d.page.locator("#messages > li").first).to_have_attribute("data-id", live.id)
        d.shot("main-phone")

        # The gateway goes away; meanwhile a message arrives and the events stream is trimmed
        # past the page's last id: on its return the page gets `reset`, then the state.
        stack.gateway.stop()
        d.connection("reconnecting")
        during = chat_message(4, text="重启期间 🔄")
        stack.deliver(during)
        stack.rclient.xtrim(stack.keys.events, maxlen=0)
        stack.publish(LoggedIn(user=USER))
        stack.publish(Notification(count=4))
        stack.gateway.start()
        d.connection("live")
        d.unread(4)
        d.row_count(4)
        assert d.rows() == [during.id, live.id, first[1].id, first[0].id]
        assert resumes(stack, "reset") >= 1  # the page went through `reset`, not a replay
        assert d.page.evaluate("window.__openSources()") == 1

        # Hidden page: no stream. Shown again from the back/forward cache: one stream again.
        d.page.evaluate("window.dispatchEvent(new PageTransitionEvent('pagehide'))")
        d.connection("closed")
        assert d.page.evaluate("window.__openSources()") == 0
        wait_for(lambda: open_streams(stack) == 0, what="the gateway to see the stream closed")
        d.page.evaluate(
            "window.dispatchEvent(new PageTransitionEvent('pageshow', {persisted: true}))"
        )
        d.connection("live")
        assert d.page.evaluate("window.__openSources()") == 1
        d.row_count(4)
        d.assert_clean()


def test_stream_refused_reopens_after_backoff_with_last_event_id(
    browser: Browser, stack: Stack
) -> None:
    """A non-200 on the stream (here 503) makes EventSource give up; the session still holds,
    so the page opens a new one itself, from the last id it saw, and loses nothing."""
    stack.publish(LoggedIn(user=USER))
    gw = stack.gateway.start()
    refusing = {"on": False}
    seen: list[str] = []

    def stream_route(route: Route) -> None:
        seen.append(route.request.url)
        if refusing["on"]:
            route.fulfill(status=503, content_type="application/json", body='{"error": "busy"}')
        else:
            route.continue_()

    with dashboard(browser, gw.url) as d:
        d.context.add_init_script(COUNT_EVENT_SOURCES)
        d.page.route(re.compile(r"/stream(\?.*)?$"), stream_route)
        signed_in(d)
        d.view("main")
        d.connection("live")
        last = stack.deliver(chat_message(1))
        d.row_count(1)
        refusing["on"] = True
        stack.gateway.restart()
        d.connection("reconnecting")
        # A new EventSource of the page's own (Playwright serves the route meanwhile).
        d.page.wait_for_function("window.__sources.length >= 2")
        missed = chat_message(2, text="断线时到达 📶")
        stack.deliver(missed)
        refusing["on"] = False
        d.connection("live")
        expect(d.page.locator(f'li[data-id="{missed.id}"]')).to_have_count(1)
        d.row_count(2)
        assert d.page.evaluate("window.__openSources()") == 1
        # The reopened streams said where the page was; the first connect said nothing.
        assert seen[0] == f"{gw.url}/stream"
        reopened = [url for url in seen[1:] if url != f"{gw.url}/stream"]
        assert reopened, seen
        assert all(url == f"{gw.url}/stream?lastEventId={last}" for url in reopened), seen
        d.assert_clean((503, "/stream"))


def test_older_messages_page_in_below(browser: Browser, stack: Stack) -> None:
    stack.publish(LoggedIn(user=USER))
    sent = [chat_message(n) for n in range(35)]
    for message in sent:
        stack.deliver(message)
    gw = stack.gateway.start()
    with dashboard(browser, gw.url) as d:
        signed_in(d)
        d.view("main")
        d.row_count(30)  # the first page
        older = d.page.locator("#older")
        older.click()
        d.row_count(35)
        expect(older).to_be_hidden()
        assert d.rows() == [m.id for m in reversed(sent)]
        d.assert_clean()


SEED_LISTENER = """
// wechat-admin's eventSourceListener, verbatim but for API_URL and the Vue instance.
(() => {
  const API_URL = '';
  const vm = { pushed: [], $router: { push(to) { vm.pushed.push(to.path || to); } } };
  function eventSourceListener() {
    let source = new EventSource(`${API_URL}/stream`);
    let self = this;
    source.addEventListener('login', function(event) {
        let data = JSON.parse(event.data);
        if (data.type == 'scan_qr_code') {
            self.uuid = data.uuid;
            self.qrCode = `data:image/png;base64,${data.extra}`;
        } else if (data.type == 'confirm_login') {
            self.sub_title = 'Scan successful';
            self.sub_desc = 'Confirm login on mobile WeChat';
            self.qrCode = data.extra;
        } else if (data.type == 'logged_in') {
            sessionStorage.setItem('user', JSON.stringify(data.user));
            self.$router.push({ path: '/main' });
        } else if (data.type == 'logged_out') {
            sessionStorage.removeItem('user');
            self.$router.push('/login');
        }
    }, false);
    source.addEventListener('notification', function(event) {
        let data = JSON.parse(event.data);
        self.notificationCount = data.count;
    }, false);
    source.addEventListener('error', function(event) {
        console.log("Failed to connect to event stream");
    }, false);
    vm.source = source;
  }
  eventSourceListener.call(vm);
  window.__vm = vm;
})();
"""


def test_wechat_admin_listener_still_works_on_our_stream(browser: Browser, stack: Stack) -> None:
    gw = stack.gateway.start()
    with dashboard(browser, gw.url) as d:
        signed_in(d)
        d.page.evaluate(SEED_LISTENER)
        wait_for(lambda: d.page.evaluate("window.__vm.source.readyState") == 1, what="open")
        stack.publish(ScanQrCode(uuid="u1", extra="iVBORw0KGgo="))
        expect_js(d.page, "window.__vm.qrCode", "data:image/png;base64,iVBORw0KGgo=")
        stack.publish(ConfirmLogin(uuid="u1", extra="data:img/jpg;base64,AAAA"))
        expect_js(d.page, "window.__vm.sub_title", "Scan successful")
        expect_js(d.page, "window.__vm.qrCode", "data:img/jpg;base64,AAAA")
        stack.publish(LoggedIn(user=USER))
        expect_js(d.page, "window.__vm.pushed.join()", "/main")
        stored = json.loads(d.page.evaluate("sessionStorage.getItem('user')"))
        assert stored["name"] == "小明 🐱"
        stack.publish(Notification(count=7))
        expect_js(d.page, "window.__vm.notificationCount", 7)
        stack.publish(LoggedOut(uuid="u1"))
        expect_js(d.page, "window.__vm.pushed.join()", "/main,/login")
        assert d.page.evaluate("sessionStorage.getItem('user')") is None
        d.assert_clean()


def resumes(stack: Stack, source: str) -> float:
    proc = stack.gateway.proc
    assert proc is not None
    return proc.metric("wxstream_gateway_resumes_total", f'source="{source}"')


def open_streams(stack: Stack) -> float:
    proc = stack.gateway.proc
    assert proc is not None
    return proc.metric("wxstream_gateway_connections")


def expect_js(page: Page, expression: str, value: object) -> None:
    wait_for(lambda: page.evaluate(expression) == value, what=f"{expression} == {value!r}")


# --- the whole stack ---------------------------------------------------------------------


# A fixed account name (the Redis of a run is this run's own): it shows in docs/dashboard.png.
@pytest.mark.parametrize("account", ["demo"])
def test_full_stack_login_messages_restart_and_wechat_logout(
    browser: Browser, stack: Stack
) -> None:
    with SimServer(poll_seconds=0.5) as sim, sim.client() as phone:
        stack.sim, stack.phone = sim, phone
        stack.start_notifier()
        stack.start_login()
        stack.gateway.start(WX_SIM_CONTROL_URL=sim.control_url)
        try:
            full_flow(browser, stack)
        except BaseException:
            print(stack.logs())
            raise
        finally:
            stack.close()


def full_flow(browser: Browser, stack: Stack) -> None:
    assert stack.sim is not None
    assert stack.phone is not None
    sim, phone = stack.sim, stack.phone
    with dashboard(browser, stack.gateway.url) as d:
        d.context.add_init_script(COUNT_EVENT_SOURCES)
        d.open()
        d.view("signin")
        d.shot("01-sign-in")
        d.sign_in()
        d.view("login")
        d.connection("live")
        d.login_phase("scan_qr_code")
        image = d.page.locator("#login-image")
        expect(image).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))
        assert d.page.eval_on_selector("#login-image", "img => img.naturalWidth") > 0
        first_qr = image.get_attribute("data-uuid")
        d.shot("02-login-qr")
        phone.expire()
        expect(image).not_to_have_attribute("data-uuid", first_qr or "")
        expect(image).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))

        # The demo phone, linked from the dashboard, scans and confirms.
        link = d.page.locator("#demo-phone-link")
        expect(link).to_have_attribute("href", f"{sim.control_url}/phone")
        with d.context.expect_page() as opened:
            link.click()
        handset = opened.value
        expect(handset.locator("#phase")).to_have_text("waiting_scan")
        handset.click("#scan")
        d.login_phase("confirm_login")
        expect(d.page.locator("#login-status")).to_have_text("Scanned — confirm on your phone.")
        assert d.page.eval_on_selector("#login-image", "img => img.naturalWidth") > 0
        d.shot("03-login-scanned")
        handset.click("#confirm")
        d.view("main")
        expect(d.page.locator("#account-name")).to_have_text("小明 🐱")
        d.unread(0)

        # Two messages: a friend's (the phone page's Chinese default) and a group member's.
        handset.click("#send")
        handset.select_option("#kind", "group")
        handset.fill("#text", "晚饭做好了 🍚")
        handset.click("#send")
        d.unread(2)
        d.row_count(2)
        rows = d.page.locator("#messages > li")
        expect(rows.nth(0).locator(".msg-chat")).to_have_text("家人群 👨‍👩‍👧")
        expect(rows.nth(0).locator(".msg-sender")).not_to_be_empty()
        expect(rows.nth(0).locator(".msg-text")).to_have_text("晚饭做好了 🍚")
        expect(rows.nth(1).locator(".msg-chat")).to_have_text("张三")
        expect(rows.nth(1).locator(".msg-text")).to_have_text("你好 👋 今晚一起吃饭吗？🍜")
        handset.screenshot(path=str(SCREENSHOTS / "demo-phone.png"), full_page=True)
        path = d.shot("04-main")
        copy_to_docs(path)

        d.page.click("#mark-read")
        d.unread(0)

        # The same phone, framed in the dashboard.
        toggle = d.page.locator("#demo-phone-toggle")
        toggle.click()
        expect(toggle).to_have_attribute("aria-expanded", "true")
        framed = d.page.frame_locator("#demo-phone-frame")
        expect(framed.locator("#phase")).to_have_text("logged_in")
        toggle.click()
        expect(d.page.locator("#demo-phone-frame")).to_be_hidden()

        # The gateway restarts mid-session; a message sent meanwhile shows exactly once.
        before = int(stack.rclient.xlen(stack.keys.messages))
        stack.gateway.stop()
        d.connection("reconnecting")
        during = phone.message(kind="friend", text="网关重启时发的 🔁", from_="李四")
        wait_for(
            lambda: int(stack.rclient.xlen(stack.keys.messages)) > before,
            timeout=15,
            what="the login service to store the message",
        )
        d.shot("05-reconnecting")
        stack.gateway.start(WX_SIM_CONTROL_URL=sim.control_url)
        d.connection("live")
        d.row_count(3)
        expect(d.page.locator("#messages > li").first).to_have_attribute("data-id", during)
        expect(d.page.locator(f'li[data-id="{during}"]')).to_have_count(1)
        d.unread(1)
        assert d.page.evaluate("window.__openSources()") == 1
        d.shot("06-main-after-restart")

        # WeChat ends the session: back to the login page, then a fresh QR on request.
        handset.click("#end-1101")
        d.view("login")
        d.login_phase("logged_out")
        expect(d.page.locator("#login-detail")).to_contain_text("another web client")
        d.shot("07-logged-out")
        codes = len(phone.state()["qr_codes"])
        d.page.click("#relogin")
        d.login_phase("scan_qr_code")
        assert len(phone.state()["qr_codes"]) > codes
        expect(image).to_have_attribute("data-uuid", phone.state()["uuid"] or "")
        d.shot("08-fresh-qr")

        # Logged in again, then out from the dashboard's own button.
        phone.scan()
        phone.confirm()
        d.view("main")
        with d.page.expect_response("**/api/logout") as answer:
            d.page.click("#wechat-logout")
        assert answer.value.status == 202
        d.view("login")
        d.login_phase("logged_out")
        expect(d.page.locator("#login-detail")).to_have_text("Logged out from this dashboard.")
        expect(d.page.locator("#relogin")).to_be_visible()
        d.assert_clean()


def copy_to_docs(path: Path) -> None:
    """Refresh the README's picture only when asked: a test run must not dirty the tree."""
    target = REPO / "docs" / "dashboard.png"
    if os.environ.get("WX_UPDATE_DOCS_SCREENSHOT") == "1" or not target.exists():
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, target)
