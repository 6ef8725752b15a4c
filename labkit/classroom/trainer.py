"""The trainer's view: a JupyterHub service at ``/services/trainer/``.

Per learner: the scenarios they started and solved, the hints they used and the minutes they
took, read afresh from each learner's own progress record (``progress.read_as``: as the learner,
never as root) at every page load; ``progress.csv`` exports the same rows. Who may look is
JupyterHub's business: the hub's OAuth lets in a user (or token) with the scope
``access:services!service=trainer`` (the ``trainer`` role in jupyterhub_config.py), and
nobody else; learners do not have it.

Run by the hub as a managed service (``python -m labkit.classroom.trainer``); the hub passes
its address and credentials in the ``JUPYTERHUB_*`` environment.
"""
from __future__ import annotations

import html
import json
import os
import time
from typing import Any
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import ioloop, web

from . import progress


def _cell(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else ""
    return html.escape("" if v is None else str(v))


def render(rows: list[progress.Row], now: float) -> str:
    summary = progress.summary(rows)
    head = ["learner", "started", "solved", "hints used", "minutes (solved)", "solved scenarios"]
    srows = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in
                                      (s["learner"], s["started"], s["solved"], s["hints_used"],
                                       s["minutes_solving"], ", ".join(s["solved_names"]))) + "</tr>"
                    for s in summary)
    drows = "".join("<tr>" + "".join(f"<td>{_cell(getattr(r, f))}</td>" for f in progress.FIELDS) + "</tr>"
                    for r in rows if r.scenario)
    th = "".join(f"<th>{h}</th>" for h in head)
    dth = "".join(f"<th>{html.escape(f)}</th>" for f in progress.FIELDS)
    return f"""<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
<title>flannel-lab: the class</title><style>
body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;margin-bottom:2em}}
td,th{{border:1px solid #bbb;padding:.25em .6em;text-align:left;white-space:nowrap}} th{{background:#eee}}
</style></head><body>
<h1>flannel-lab: the class</h1>
<p>{len(summary)} learners, read at {time.strftime('%H:%M:%S UTC', time.gmtime(now))} (this page reloads every 30 s).
<a href="progress.csv">Download as CSV</a> &middot; <a href="progress.json">JSON</a></p>
<h2>Per learner</h2><table id="summary"><tr>{th}</tr>{srows}</table>
<h2>Per scenario</h2><table id="detail"><tr>{dth}</tr>{drows}</table>
</body></html>"""


class _Base(HubOAuthenticated, web.RequestHandler):
    def rows(self) -> tuple[list[progress.Row], float]:
        now = time.time()
        return progress.class_rows(now=now), now


class PageHandler(_Base):
    @web.authenticated
    async def get(self) -> None:
        rows, now = await ioloop.IOLoop.current().run_in_executor(None, self.rows)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.write(render(rows, now))


class CSVHandler(_Base):
    @web.authenticated
    async def get(self) -> None:
        rows, _ = await ioloop.IOLoop.current().run_in_executor(None, self.rows)
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", 'attachment; filename="flannel-lab-progress.csv"')
        self.write(progress.to_csv(rows))


class JSONHandler(_Base):
    @web.authenticated
    async def get(self) -> None:
        rows, now = await ioloop.IOLoop.current().run_in_executor(None, self.rows)
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"read_at": now, "summary": progress.summary(rows),
                               "rows": [{f: getattr(r, f) for f in progress.FIELDS} for r in rows]}))


def make_app() -> web.Application:
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/trainer/")
    return web.Application([
        (prefix, PageHandler),
        (url_path_join(prefix, "progress.csv"), CSVHandler),
        (url_path_join(prefix, "progress.json"), JSONHandler),
        (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
        (prefix.rstrip("/"), web.RedirectHandler, {"url": prefix}),
    ], cookie_secret=os.urandom(32))


def main() -> None:
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))
    make_app().listen(url.port or 80, url.hostname or "127.0.0.1")
    try:
        ioloop.IOLoop.current().start()
    except KeyboardInterrupt:  # the hub stops its services with SIGINT
        pass


if __name__ == "__main__":
    main()
