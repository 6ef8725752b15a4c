"""A class on one server (issue 15): learner accounts, per-learner limits, the hub, the trainer's view.

Each learner is an ordinary Unix user; their Jupyter server runs as that user inside their own
rootless sandbox (``labkit sandbox run``), so their labs are theirs by the kernel's rules, not
by naming. The modules, bottom to top:

- ``users``: learner accounts (a recognisable prefix, one group), added and removed
- ``limits``: memory and process limits per learner (cgroup v2, cgroup v1, or documented)
- ``progress``: each learner's scenario progress, read as that learner, as table rows and CSV
- ``spawner``: the JupyterHub spawner that starts a learner's server in their sandbox and cgroup
- ``trainer``: the trainer's view, a JupyterHub service (HTML table and CSV)
- ``hub``: the hub's state folder and command line, and ``jupyterhub_config.py`` beside it
"""
