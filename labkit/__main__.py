"""`python -m labkit ...`: the CLI. An ordinary user's command joins their sandbox here,
before labkit.cli's imports (pyroute2, scapy, grpc) can start a thread: a process can
join a user namespace only while it is single-threaded (labkit/sandbox.py)."""
import sys

from labkit import sandbox

_args = sys.argv[1:]
_verb = [a for a in _args if not a.startswith("-")][:2]
if _verb[:1] == ["sandbox"]:  # run, status, stop: without importing the lab (labkit/sandbox_cli.py)
    from labkit import sandbox_cli
    sys.exit(sandbox_cli.main(_args))
try:
    sandbox.enter_early(_args)
except sandbox.SandboxError as _e:
    print(f"labkit: error: {_e}", file=sys.stderr)
    sys.exit(1)

from labkit.cli import finish, main  # noqa: E402  (after joining the sandbox, on purpose)

finish(main())
