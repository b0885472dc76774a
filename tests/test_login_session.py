"""The login service's process hygiene: private session files, secrets kept out of the
logs, commands it does not understand, optional media download, and a quick SIGTERM."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from procs import wait_for

from services.login.itchat_logging import RedactingFilter
from services.login.session_file import SessionFile

pytest_plugins = ("login_fixtures",)

if TYPE_CHECKING:
    from login_fixtures import LoginRig

WAIT = 15.0


def _mode(path: os.PathLike[str]) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_session_directory_and_file_are_private(rig: LoginRig) -> None:
    rig.start()
    rig.log_in()
    wait_for(rig.session_file.exists, timeout=WAIT)
    assert _mode(rig.session_dir) == 0o700
    assert _mode(rig.session_file) == 0o600


@pytest.mark.parametrize("mode", [0o620, 0o606], ids=["group_writable", "world_writable"])
def test_group_or_world_writable_session_file_is_refused(rig: LoginRig, mode: int) -> None:
    first = rig.start("first")
    rig.log_in()
    assert first.stop() == 0
    os.chmod(rig.session_file, mode)
    restart = rig.last_id()

    second = rig.start("second")
    # Not loaded: a QR code instead of a hot reload, and a clear error in the log.
    rig.wait_login("scan_qr_code", after=restart)
    assert "session_file_refused" in second.log_text()
    assert "group- or world-writable" in second.log_text()
    rejected = [p.name for p in rig.session_dir.iterdir() if ".rejected-" in p.name]
    assert len(rejected) == 1
    rig.phone.scan()
    rig.phone.confirm()
    rig.wait_login("logged_in", after=restart)
    wait_for(rig.session_file.exists, timeout=WAIT)
    assert _mode(rig.session_file) == 0o600


def test_session_in_a_group_writable_directory_is_neither_loaded_nor_saved(
    rig: LoginRig,
) -> None:
    first = rig.start("first")
    rig.log_in()
    assert first.stop() == 0
    os.chmod(rig.session_dir, 0o770)  # noqa: S103 (the point of the test)
    restart = rig.last_id()
    second = rig.start("second")
    rig.wait_login("scan_qr_code", after=restart)
    assert "session directory is group- or world-writable" in second.log_text()
    assert _mode(rig.session_file) == 0o600  # the old file, untouched and unused


def test_session_file_inspection_unit(tmp_path: Path) -> None:
    directory = tmp_path / "s"
    session = SessionFile(directory / "a.pkl")
    assert session.inspect().verdict == "missing"
    assert _mode(directory) == 0o700
    session.path.write_bytes(b"x")
    os.chmod(session.path, 0o644)
    assert session.inspect().verdict == "ok"
    assert _mode(session.path) == 0o600  # readable by others is tightened, not refused
    os.symlink(session.path, session.path.with_name("b.pkl"))
    assert SessionFile(session.path.with_name("b.pkl")).inspect().verdict == "unsafe"


def test_logs_carry_no_message_text_tickets_or_uuids(rig: LoginRig) -> None:
    proc = rig.start()  # at DEBUG, itchat's and urllib3's lines included
    rig.log_in()
    secret_text = "绝密消息 🤫 do-not-log-4711"
    rig.phone.message(kind="friend", type="text", text=secret_text)
    rig.phone.message(kind="group", type="text", text=secret_text)
    rig.wait_messages(2)
    rig.phone.end(1101)
    rig.wait_login("logged_out")
    assert proc.stop() == 0

    text = proc.log_text()
    assert "message_stored" in text
    sessions = list(rig.sim.state.sessions.values())
    assert sessions
    secrets = [secret_text, "do-not-log-4711", *rig.phone.state()["qr_codes"]]
    for session in sessions:
        secrets += [session.sid, session.skey, session.pass_ticket, session.data_ticket,
                    session.auth_ticket]  # fmt: skip
    leaked = [s for s in secrets if s and s in text]
    assert not leaked, f"secrets in the log: {leaked}"
    assert "pass_ticket=" not in text.replace("pass_ticket=[redacted]", "")
    assert "\u2588" not in text  # itchat's import-time write to stdout


def test_commands_of_others_are_acked_and_garbage_is_dead_lettered(rig: LoginRig) -> None:
    proc = rig.start()
    rig.wait_login("scan_qr_code")
    rig.command("mark_read")
    rig.command("reboot_the_world")
    rig.command("logout", data="{not json")
    rig.rclient.xadd(rig.keys.commands, {"event": "logout"})  # no data, no ts

    def dead() -> list[dict[str, str]]:
        return [json.loads(f["data"]) for _, f in rig.entries(rig.keys.dead_letters)]

    letters = wait_for(lambda: (lambda d: d if len(d) >= 3 else None)(dead()), timeout=WAIT)
    assert isinstance(letters, list)
    reasons = sorted(d["reason"].split(" ")[0] for d in letters)
    assert reasons == ["invalid", "malformed", "unknown"]
    wait_for(lambda: rig.rclient.xpending(rig.keys.commands, "login")["pending"] == 0, timeout=WAIT)
    # None of them logged anything out, and the process carries on.
    assert not [d for _, d in rig.login_events() if d["type"] == "logged_out"]
    assert proc.alive
    assert proc.metric('wxstream_login_commands_total{outcome="not_ours"}') == 1.0


def test_received_media_is_downloaded_when_enabled(rig: LoginRig) -> None:
    rig.start(WX_DOWNLOAD_MEDIA="true")
    rig.log_in()
    rig.phone.message(kind="friend", type="image")
    (_, image), *_ = rig.wait_messages(1)
    path = rig.run_dir / "media" / f"{image['id']}.img"
    wait_for(path.exists, timeout=WAIT, what="downloaded image")
    wait_for(lambda: path.read_bytes().startswith(b"\x89PNG"), timeout=WAIT)
    assert _mode(path) == 0o600


@pytest.mark.parametrize("sim", [30.0], indirect=True, ids=["30s_long_poll"])
def test_sigterm_exits_zero_quickly_even_during_a_long_poll(rig: LoginRig) -> None:
    proc = rig.start()
    rig.log_in()  # the receive thread now sits in a 30 s synccheck
    rig.phone.wait(endpoint="synccheck", timeout=WAIT)
    started = time.monotonic()
    assert proc.stop(timeout=10) == 0
    took = time.monotonic() - started
    assert took < 5.0, f"SIGTERM took {took:.1f}s"
    # The session was saved for the next start and the lease was handed back.
    assert _mode(rig.session_file) == 0o600
    assert rig.rclient.get(rig.keys.login_lease) is None
    assert "session_saved" in proc.log_text()


@pytest.mark.parametrize("sim", [30.0], indirect=True, ids=["30s_long_poll"])
def test_sigterm_while_a_qr_code_waits_exits_zero_quickly(rig: LoginRig) -> None:
    proc = rig.start()
    rig.wait_login("scan_qr_code")
    rig.phone.wait(endpoint="login", timeout=WAIT)
    started = time.monotonic()
    assert proc.stop(timeout=10) == 0
    assert time.monotonic() - started < 5.0


def test_itchat_and_urllib3_lines_lose_tickets_urls_and_text() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactingFilter())
    loggers = [logging.getLogger(n) for n in ("itchat", "urllib3.connectionpool")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        url = "http://h/cgi-bin/mmwebwx-bin/synccheck?r=1&skey=%40crypt_SECRET1&sid=SECRET2"
        # itchat logs preformatted text (traceback.format_exc(), "%" already applied).
        traceback_text = (
            "Traceback (most recent call last):\n  File x\n"
            "requests.exceptions.ConnectionError: Max retries exceeded with url: " + url
        )
        logging.getLogger("itchat").error(traceback_text)
        logging.getLogger("itchat").error("Login successfully as 小明 SECRET3")
        logging.getLogger("itchat").error("Useless message received: 1\n{'Content': 'SECRET4'}")
        logging.getLogger("itchat").error("Please press confirm on your phone.")
        logging.getLogger("urllib3.connectionpool").warning(
            "Retrying after connection broken by 'x': /webwxsync?sid=SECRET5&pass_ticket=SECRET6"
        )
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    text = out.getvalue()
    assert "SECRET" not in text
    assert "ConnectionError" in text
    assert "Please press confirm on your phone." in text
    assert text.count("withheld") == 2
    assert "/webwxsync?[redacted]" in text


def test_commands_still_work_after_the_stream_and_its_group_are_gone(rig: LoginRig) -> None:
    rig.start()
    rig.log_in()
    rig.rclient.delete(rig.keys.commands)  # as after a Redis restart without persistence
    wait_for(lambda: rig.rclient.exists(rig.keys.commands), timeout=WAIT, what="group again")
    rig.command("logout")
    _, out = rig.wait_login("logged_out")
    assert out["reason"] == "command"
