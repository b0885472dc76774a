# mypy: ignore-errors
"""Peer 1, wechat-admin's choice: Flask-SSE on gunicorn with gevent workers.

Written the way its README shows: the blueprint at ``/stream``, Redis pub/sub behind it,
and the producer PUBLISHes each event (``sse.publish(data, type=..., id=...)``'s JSON).
Each open stream holds its own Redis connection (a SUBSCRIBE), as Flask-SSE does.

Run (from ``bench/.peers/venv``):
    gunicorn -k gevent -w 1 --worker-connections 20000 --chdir bench/peers flask_sse_app:app
with ``REDIS_URL`` in the environment.
"""

import os

from flask import Flask
from flask_sse import sse

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ["REDIS_URL"]
app.register_blueprint(sse, url_prefix="/stream")


@app.get("/healthz")
def healthz():
    return {"status": "ok"}
