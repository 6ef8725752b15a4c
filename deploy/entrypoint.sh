#!/usr/bin/env bash
# The single-user pod's entry point (deploy/Dockerfile): check what the labs need, copy the
# course into the learner's home on first start, then exec the command (jupyterhub-singleuser).
# Tested by tests/unit/test_deploy.py (runs it with a stand-in command).
set -euo pipefail
course=${LABKIT_COURSE:-/opt/flannel-lab/notebooks}
home=${HOME:-/home/jovyan}

# What the labs need from the pod (deploy/values.yaml): say it once, plainly, in the pod's log
caps=$(awk '/^CapEff:/ {print $2}' /proc/self/status 2>/dev/null || echo 0)
need=$(( (1 << 12) | (1 << 21) ))          # CAP_NET_ADMIN, CAP_SYS_ADMIN
if [ "$(id -u)" = 0 ] && (( (16#${caps:-0} & need) != need )); then
    echo "flannel-lab: this pod lacks NET_ADMIN or SYS_ADMIN: labs cannot be built (deploy/values.yaml:" \
         "container_security_context, hostUsers: false)" >&2
fi
if [ "$(id -u)" = 0 ] && [ "$(awk '{print $2; exit}' /proc/self/uid_map 2>/dev/null)" = 0 ]; then
    echo "flannel-lab: warning: uid 0 here is the node's root (no pod user namespace); set hostUsers: false" >&2
fi

# The course, the learner's own copy, made once (never overwrites their work)
if [ -d "$course" ] && [ ! -e "$home/flannel-lab" ]; then
    mkdir -p "$home"
    cp -r "$course" "$home/flannel-lab"
fi

# Jupyter refuses to run as uid 0 unless told; here uid 0 is the pod's (hostUsers: false)
if [ "$(id -u)" = 0 ] && [ "${1:-}" = jupyterhub-singleuser ]; then
    set -- "$@" --allow-root
fi
exec "$@"
