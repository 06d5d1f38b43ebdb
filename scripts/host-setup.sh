#!/bin/sh
# Prepare a Debian 12 host for rlm-host (idempotent; root for the first run):
# Docker Engine, gVisor's runsc registered with the args rlm-host needs,
# debootstrap for the air-gapped image build, python3-venv, and g++ for llama-cpp-python.
# `host-setup.sh test` also installs what the test suite needs (chromium for the report, tmux for the TUI).
set -eu
log() { echo "host-setup: $*" >&2; }

need=""
command -v dockerd >/dev/null 2>&1 || need="$need docker.io"
command -v runsc >/dev/null 2>&1 || need="$need runsc"
command -v debootstrap >/dev/null 2>&1 || need="$need debootstrap"
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need="$need python3-venv"
command -v g++ >/dev/null 2>&1 || need="$need g++"  # llama-cpp-python builds from source
if [ "${1:-}" = test ]; then
    command -v chromium >/dev/null 2>&1 || need="$need chromium"
    command -v tmux >/dev/null 2>&1 || need="$need tmux"
fi
if [ -n "$need" ]; then
    if [ "$(id -u)" != 0 ]; then
        log "missing:$need; run this as root (e.g. sudo make test) to install them"
        exit 1
    fi
    log "installing$need (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

changed=unchanged
if [ "$(id -u)" = 0 ]; then
    changed=$(python3 "$(dirname "$0")/register_runsc.py")
fi

if docker info >/dev/null 2>&1; then
    if [ "$changed" = changed ]; then
        if [ -f /var/run/docker.pid ]; then
            log "runsc registered; asking dockerd to reload its configuration"
            kill -HUP "$(cat /var/run/docker.pid)"
            sleep 1
        else
            log "runsc registered in /etc/docker/daemon.json: restart dockerd to use it"
        fi
    fi
else
    if [ "$(id -u)" != 0 ]; then
        log "Docker is not running and starting it needs root"
        exit 1
    fi
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        log "starting docker with systemctl"
        systemctl start docker
    else
        log "starting dockerd in the background (log: /var/log/rlm-host-dockerd.log)"
        nohup dockerd >/var/log/rlm-host-dockerd.log 2>&1 &
    fi
    tries=0
    until docker info >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ "$tries" -gt 60 ]; then
            log "dockerd did not come up in 60s; see /var/log/rlm-host-dockerd.log"
            exit 1
        fi
        sleep 1
    done
fi
log "Docker $(docker version --format '{{.Server.Version}}') ready; runtimes: $(docker info --format '{{range $k, $v := .Runtimes}}{{$k}} {{end}}')"
