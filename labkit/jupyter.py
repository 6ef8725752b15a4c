"""The old home of the notebook helpers, kept so committed notebooks and habits work:
``from labkit.jupyter import start, finish, status_table`` and
``python -m labkit.jupyter notebooks/NN-*.ipynb``. The code is in :mod:`labkit.notebook`."""
from __future__ import annotations

import sys

from .notebook.execute import execute_notebooks  # noqa: F401
from .notebook.session import (  # noqa: F401
    NOTEBOOK_LAB,
    SUFFIX_RE,
    check_removable,
    cleanup_labs,
    current,
    current_config,
    finish,
    notebook_labs,
    show_json,
    start,
    status_table,
    use,
    wait_until,
)
from .notebook.setup_check import setup_check  # noqa: F401
from .notebook.tables import Table  # noqa: F401

if __name__ == "__main__":
    from .notebook.execute import main
    main(sys.argv[1:])
