"""Re-executing a notebook removes the labs its kernel left, not those of a notebook kernel
still running beside it (labkit.notebook.session.cleanup_labs(spare_live_kernels=True))."""
import os
import re
import subprocess
import sys

from tests.helpers import make_state


def test_cleanup_spares_the_labs_of_live_notebook_kernels_only(run_dir):
    from labkit.notebook.session import cleanup_labs
    from labkit.state import LabState
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        make_state("nbq01", "notebook kernel", other.pid)     # another notebook, running
        make_state("nbq02", "notebook kernel", gone.pid)      # a kernel that is gone
        make_state("nbq03", "labkit up", os.getpid())         # not a notebook kernel's
        pattern = re.compile(r"^nbq\d\d$")
        assert cleanup_labs(pattern, spare_live_kernels=True) == ["nbq02", "nbq03"]
        assert LabState("nbq01").exists() and not LabState("nbq02").exists()
        assert cleanup_labs(pattern) == ["nbq01"]              # the default removes it too
    finally:
        other.kill()
        other.wait()
