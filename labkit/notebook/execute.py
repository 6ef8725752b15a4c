"""Re-execute notebooks and save them with their outputs (what nbval compares).

    python -m labkit.notebook.execute notebooks/[0-9]*.ipynb     (or: python -m labkit.jupyter ...)
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable

from .session import cleanup_labs


def execute_notebooks(paths: Iterable[str], timeout: int = 300) -> None:
    """Run each notebook top to bottom in a fresh kernel and write it back, outputs included;
    whatever labs its kernel left behind are removed afterwards (not the labs of notebook
    kernels still running beside it: another notebook being executed or open in JupyterLab)."""
    # imported here, not at the top: nbclient takes ~2.0 s to import (python -X importtime) and
    # labkit.jupyter, which every notebook kernel imports at start, imports this module
    import nbformat
    from nbclient import NotebookClient
    for path in paths:
        t = time.monotonic()
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}})
        try:
            client.execute()
        finally:
            nbformat.write(nb, path)
            cleanup_labs(spare_live_kernels=True)
        print(f"{path}: executed in {time.monotonic() - t:.1f}s", flush=True)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--reap"]:          # the reaper of notebook kernels started before the move
        from .session import main as session_main
        session_main(argv)
    else:
        execute_notebooks(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
