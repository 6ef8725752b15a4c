"""The notebook layer: everything a notebook uses, on top of ``Lab`` and nothing below it.

Floors, each importing only the ones under it (and labkit's Lab, status, spec):

* ``tables``: Table and the text/HTML tables (result, lab view, matrix);
* ``panels``: the config form's checks (no ipywidgets);
* ``session``: one lab per notebook (start, replay, finish, use, the reaper), status_table;
* ``magics``: ``%node`` / ``%%node``;
* ``setup_check``: notebook 00, with the lab's own binary list and kernel probe;
* ``widgets``: the ipywidgets panels (imported on demand: it needs ipywidgets);
* ``execute``: re-running and saving notebooks.

Nothing in labkit outside this package imports it.
"""
from .session import current, finish, replay, show_json, start, status_table, use, wait_until  # noqa: F401
from .tables import Table  # noqa: F401
