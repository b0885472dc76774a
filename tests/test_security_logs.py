"""No secret, cookie, ticket, QR payload or message text in any log line: the whole flow
(simulator, itchat in the login service, notifier, gateway, an SSE client, the REST API) at
DEBUG, then every log the services and the simulator wrote is searched for every secret
value the run handled."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import httpx
import pytest
from fault_fixtures import Recorder, Services, services
from gateway_fixtures import SECRET

if TYPE_CHECKING:
    from login_fixtures import LoginRig

__all__ = ["services"]  # fixtures
pytest_plugins = ("login_fixtures",)

TEXTS = (
    "机密-friend-7f3a 🤐",
    "机密-group-91c2 <b>x</b> & 'quoted'",
    "SECRET-mp-44d0",
)


def login_seen(recorder: Recorder, kind: str) -> bool:
    return any(e.event == "login" and e.json()["type"] == kind for e in recorder.events)


@pytest.mark.timeout(90)
async def test_no_secret_or_message_text_in_any_log(
    rig: LoginRig, services: Services, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the simulator runs in this process: its lines too
    debug = {"log_level": "DEBUG"}
    notifier = services.notifier(redis_url, **debug)
    gw = services.gateway(redis_url, **debug)
    login = rig.start()  # DEBUG already, itchat's and urllib3's lines included

    # Sign in both ways; the cookie value and the token are secrets too.
    async with httpx.AsyncClient(base_url=gw.url) as http:
        signed = await http.post(
            "/api/session", json={"secret": SECRET}, headers={"Origin": gw.url}
        )
        cookie = signed.cookies["wxstream_session"]
        token = (await http.post("/api/token", json={"secret": SECRET})).json()["token"]
        await http.post("/api/token", json={"secret": "wrong-" + SECRET})  # a failed sign-in
        recorder = Recorder(f"{gw.url}/stream", token).start()
        await recorder.wait_for(
            lambda r: any(
                e.event == "login" and e.json()["type"] == "scan_qr_code" for e in r.events
            )
        )
        qr = next(e.json() for e in recorder.events if e.event == "login")
        await asyncio.to_thread(rig.phone.scan)
        await asyncio.to_thread(rig.phone.confirm)
        await asyncio.to_thread(rig.wait_login, "logged_in")
        await asyncio.to_thread(rig.phone.message, "friend", "text", TEXTS[0])
        await asyncio.to_thread(rig.phone.message, "group", "text", TEXTS[1])
        await asyncio.to_thread(rig.phone.message, "mp", "text", TEXTS[2])
        await recorder.wait_for(
            lambda r: any(e.event == "notification" and e.json()["count"] == 3 for e in r.events)
        )
        auth = {"Authorization": f"Bearer {token}"}
        assert (await http.get("/api/messages", headers=auth)).status_code == 200
        assert (await http.post("/api/notifications/read", headers=auth)).status_code == 202
        assert (await http.post("/api/logout", headers=auth)).status_code == 202
        await recorder.wait_for(lambda r: login_seen(r, "logged_out"))
        await recorder.stop()

    secrets = {"admin secret": SECRET, "cookie": cookie, "bearer token": token}
    secrets |= {f"text {i}": text for i, text in enumerate(TEXTS)}
    secrets["qr payload"] = qr["extra"][:200]
    for i, uuid in enumerate(rig.phone.state()["qr_codes"]):
        secrets[f"uuid {i}"] = uuid
    for session in rig.sim.state.sessions.values():
        secrets |= {
            "wxsid": session.sid,
            "wxuin": str(session.uin),
            "skey": session.skey,
            "pass_ticket": session.pass_ticket,
            "webwx_data_ticket": session.data_ticket,
            "webwx_auth_ticket": session.auth_ticket,
        }
    for proc in (notifier, gw, login):
        assert proc.stop() == 0

    logs = {p.log_path.name: p.log_text() for p in (notifier, gw, login)}
    # The simulator runs in this process; the test's own HTTP clients log here too (their
    # DEBUG lines carry the requests they make): only the simulator's request log counts.
    logs["simulator"] = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith("wechat_sim")
    )
    assert all(logs.values())
    assert "message_stored" in logs[login.log_path.name]
    assert "wechat_sim" in {r.name for r in caplog.records}
    leaked = [
        (what, where)
        for what, value in secrets.items()
        for where, text in logs.items()
        if value and value in text
    ]
    assert not leaked, f"secrets in the logs: {leaked}"
    total = sum(len(t.splitlines()) for t in logs.values())
    print(f"\n{total} log lines from 4 components searched for {len(secrets)} secrets: none found")
