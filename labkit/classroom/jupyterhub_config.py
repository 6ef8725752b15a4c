"""JupyterHub's configuration for a class on one server, from ``.hub/settings.json`` (see hub.py).

Read by ``jupyterhub -f`` (``./run hub`` starts it). Each block is one decision:
who logs in (PAM: the machine's own learner accounts), how a learner's server starts (in their
sandbox, as them, in their cgroup), where things listen, what is culled, and who sees the class.
For a real class, replace the authenticator block (README: classroom: OAuth or LTI).
"""
import os
import sys

from traitlets.config import get_config

from labkit.classroom.hub import ROOT, load_settings
from labkit.classroom.spawner import SandboxSpawner
from labkit.classroom.users import GROUP

c = get_config()
s = load_settings(os.environ["LABKIT_HUB_SETTINGS"])


def _url(ip: str, port: int) -> str:
    return f"http://{'[' + ip + ']' if ':' in ip else ip}:{port}"


# --- where things listen: the proxy's public port on 127.0.0.1 unless the trainer said --listen
c.JupyterHub.bind_url = _url(s.ip, s.port)
c.JupyterHub.hub_bind_url = _url("127.0.0.1", s.hub_port)
c.ConfigurableHTTPProxy.api_url = _url("127.0.0.1", s.api_port)
c.ConfigurableHTTPProxy.command = [s.chp]
c.ConfigurableHTTPProxy.pid_file = os.path.join(s.state, "proxy.pid")
with open(os.path.join(s.state, "proxy_token")) as f:
    c.ConfigurableHTTPProxy.auth_token = f.read().strip()

# --- the hub's state: all in .hub/ (mode 0700, git-ignored)
c.JupyterHub.db_url = "sqlite:///" + os.path.join(s.state, "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(s.state, "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = os.path.join(s.state, "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True

# --- who logs in: the server's own accounts through PAM; learners are the group's members
c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.allowed_groups = {GROUP}
c.PAMAuthenticator.open_sessions = False   # no pam_systemd/logind session per server (containers)
c.Authenticator.allowed_users = set(s.trainers)

# --- each learner's server: as the learner, in their sandbox, in their cgroup
c.JupyterHub.spawner_class = SandboxSpawner
c.SandboxSpawner.sandbox = s.sandbox
c.Spawner.ip = "127.0.0.1"
c.Spawner.mem_limit = s.memory
c.Spawner.cpu_limit = s.cpus
c.SandboxSpawner.tasks_limit = s.tasks or 0
c.Spawner.start_timeout = 300   # a class starting at once on a small server: JupyterLab takes a while
c.Spawner.http_timeout = 240

# --- services: the idle culler and the trainer's view
c.JupyterHub.services = [
    {"name": "idle-culler",
     "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={s.cull_timeout}"]},
    {"name": "trainer", "url": _url("127.0.0.1", s.trainer_port), "display": True, "oauth_no_confirm": True,
     "command": [sys.executable, "-m", "labkit.classroom.trainer"],
     "environment": {"PYTHONPATH": ROOT}},
]
c.JupyterHub.load_roles = [
    {"name": "idle-culler", "services": ["idle-culler"],
     "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"]},
    # trainers see the class (the trainer's view, the admin page's list) and may start or stop a
    # learner's server, but do not get into it: a learner's notebooks and labs stay theirs
    {"name": "trainer", "users": list(s.trainers),
     "scopes": ["access:services!service=trainer", "admin-ui", "list:users", "read:users", "read:servers",
                "admin:servers"]},
]

# --- optional: a token for scripts (start every server before the lesson; the hub test)
if s.admin_token_file:
    with open(s.admin_token_file) as f:
        token = f.read().strip()
    c.JupyterHub.services.append({"name": "class-admin", "api_token": token})
    c.JupyterHub.load_roles.append(
        {"name": "class-admin", "services": ["class-admin"],
         "scopes": ["admin:users", "admin:servers", "access:servers", "list:users", "read:users",
                    "access:services", "list:services", "read:services", "admin-ui", "tokens"]})
