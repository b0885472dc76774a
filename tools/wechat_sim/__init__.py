"""A WeChat web-protocol simulator that the real itchat-uos 1.4.1 logs in against.

Protocol side: what itchat talks to (``/``, ``/jslogin``, ``/cgi-bin/mmwebwx-bin/...``).
Control side: JSON under ``/_sim/`` that plays the phone and WeChat's servers
(scan, confirm, expire, refuse, push login, incoming messages, session end); see README.md.

In tests::

    with SimServer(poll_seconds=1.0) as sim, sim.client() as phone:
        itchat.config.BASE_URL = sim.base_url
        ...  # start core.auto_login(...) in a thread
        phone.wait(phase="waiting_scan")
        phone.scan()
        phone.confirm()

From a shell: ``python -m tools.wechat_sim --port 8900 --poll-seconds 25``.
"""

from .client import SimClient, SimError
from .server import SimServer
from .state import SimConfig, SimState, StateView

__all__ = ["SimClient", "SimConfig", "SimError", "SimServer", "SimState", "StateView"]
