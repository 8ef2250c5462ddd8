#!/usr/bin/env bash
# Make a Docker engine answer on the default socket: install Debian's docker.io
# when dockerd is missing, start dockerd in the background when `docker info`
# fails, wait until it is ready. Idempotent; prints nothing but progress on stderr.
#
# Env: STEWARD_CACHE (default ~/.cache/steward) holds dockerd.log and dockerd.pid;
#      STEWARD_DOCKERD_TIMEOUT (default 60) seconds to wait for readiness.
set -euo pipefail

CACHE="${STEWARD_CACHE:-$HOME/.cache/steward}"
TIMEOUT="${STEWARD_DOCKERD_TIMEOUT:-60}"
LOG="$CACHE/dockerd.log"
PIDFILE="$CACHE/dockerd.pid"
mkdir -p "$CACHE"

log() { echo "ensure-dockerd: $*" >&2; }

docker_ok() { timeout 10 docker info >/dev/null 2>&1; }

if docker_ok; then
    log "engine already running"
    exit 0
fi

case "${DOCKER_HOST:-unix:///var/run/docker.sock}" in
    unix:///var/run/docker.sock | unix:///run/docker.sock) ;;
    *)
        log "DOCKER_HOST=$DOCKER_HOST does not answer; not starting a local dockerd for it"
        exit 1
        ;;
esac

if [ "$(id -u)" -ne 0 ]; then
    log "docker info fails and this user is not root: start the engine yourself"
    exit 1
fi

apt_install() {
    # apt-get update only when the package is not known to the local lists.
    if ! apt-cache show "$@" >/dev/null 2>&1; then
        apt-get update -qq
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

if ! command -v dockerd >/dev/null 2>&1; then
    log "installing docker.io"
    apt_install docker.io
fi
# /usr/local/bin/docker may be a newer client than Debian's engine; that is fine
# (the client negotiates the API version). Install Debian's client only if none.
command -v docker >/dev/null 2>&1 || apt_install docker-cli || apt_install docker.io

# A pidfile of a dockerd that is still alive but not answering: wait for it
# rather than starting a second one.
running_pid=""
if [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    running_pid="$(cat "$PIDFILE")"
    log "dockerd pid $running_pid is running, waiting for it"
elif pgrep -x dockerd >/dev/null 2>&1; then
    running_pid="$(pgrep -x dockerd | head -n1)"
    log "a dockerd (pid $running_pid) is already running, waiting for it"
else
    # dockerd refuses to start when its own pidfile is stale.
    rm -f /var/run/docker.pid
    log "starting dockerd (log: $LOG)"
    # containerd is started by dockerd itself when no system containerd runs.
    # Own session (a Ctrl-C to the caller must not reach it) and no test-session
    # marker in its environment (the suite's leak check would take it for a leak).
    env -u STEWARD_TEST_SESSION setsid nohup dockerd --pidfile "$PIDFILE" >>"$LOG" 2>&1 </dev/null &
    running_pid=$!
    disown || true
fi

deadline=$(( $(date +%s) + TIMEOUT ))
until docker_ok; do
    if ! kill -0 "$running_pid" 2>/dev/null; then
        log "dockerd exited; last log lines:"
        tail -n 30 "$LOG" >&2 || true
        exit 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        log "dockerd not ready after ${TIMEOUT}s; last log lines:"
        tail -n 30 "$LOG" >&2 || true
        exit 1
    fi
    sleep 0.5
done
log "engine ready: $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null)"
