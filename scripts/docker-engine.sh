#!/usr/bin/env bash
# A Docker engine for `make sam-local` on a machine without a running one (CI): start `dockerd` in
# the background when none answers, and stop it again afterwards, only if this script started it.
#
# Usage: scripts/docker-engine.sh start|stop|status
#   start    if `docker info` answers, do nothing; else start dockerd (root only) and wait for it.
#            Records what it started in out/docker-engine/ (pid, log).
#   stop     stop the dockerd that `start` started (nothing else); no-op when it started none.
#   status   exit 0 when an engine answers.
# Env: DOCKER_ENGINE_DIR (default out/docker-engine), DOCKER_ENGINE_WAIT_S (default 60).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${DOCKER_ENGINE_DIR:-$ROOT/out/docker-engine}"
PIDFILE="$DIR/dockerd.pid"
WAIT_S="${DOCKER_ENGINE_WAIT_S:-60}"

die() { echo "docker-engine: FAIL: $*" >&2; exit 1; }
note() { echo "docker-engine: $*"; }
answers() { docker info >/dev/null 2>&1; }

case "${1:-}" in
  status)
    if answers; then note "an engine answers ($(docker info --format '{{.ServerVersion}}' 2>/dev/null))"; exit 0; fi
    note "no engine answers"; exit 1 ;;

  start)
    command -v docker >/dev/null || die "no docker command (Debian: apt-get install docker.io)"
    if answers; then
      note "an engine already runs ($(docker info --format '{{.ServerVersion}}' 2>/dev/null)); leaving it alone"
      exit 0
    fi
    command -v dockerd >/dev/null || die "no engine answers and there is no dockerd to start (Debian: apt-get install docker.io)"
    [[ "$(id -u)" == 0 ]] || die "no engine answers, and starting dockerd needs root (or start Docker yourself)"
    mkdir -p "$DIR"
    # setsid: the engine is not in the caller's process group, so a Ctrl-C there does not reach it
    # before `stop` does.
    setsid dockerd --pidfile "$DIR/dockerd.own.pid" >"$DIR/dockerd.log" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    for ((i = 0; i < WAIT_S * 4; i++)); do
      if answers; then
        note "started dockerd (pid $(cat "$PIDFILE"), $(docker info --format '{{.ServerVersion}}, {{.Driver}}, cgroup {{.CgroupVersion}}' 2>/dev/null)); log: $DIR/dockerd.log"
        exit 0
      fi
      if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        tail -15 "$DIR/dockerd.log" >&2 || true
        rm -f "$PIDFILE"
        die "dockerd exited at once: Docker cannot run on this machine (log above, full: $DIR/dockerd.log)"
      fi
      sleep 0.25
    done
    tail -15 "$DIR/dockerd.log" >&2 || true
    die "dockerd did not answer within ${WAIT_S} s (log: $DIR/dockerd.log)" ;;

  stop)
    [[ -f "$PIDFILE" ]] || { note "started no engine; nothing to stop"; exit 0; }
    pid="$(cat "$PIDFILE")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for ((i = 0; i < 120; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      if kill -0 "$pid" 2>/dev/null; then
        note "dockerd (pid $pid) still runs after 30 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
      fi
      note "stopped dockerd (pid $pid)"
    else
      note "dockerd (pid $pid) had already exited"
    fi
    rm -f "$PIDFILE" ;;

  *) sed -n '2,10p' "$0"; exit 2 ;;
esac
