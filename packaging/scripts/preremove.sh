#!/bin/sh
# Picket preremove (deb prerm: remove|upgrade|deconfigure|failed-upgrade; rpm %preun:
# 0 erase, 1 upgrade). On removal, stops and disables the services so that no unit runs
# or stays enabled without its binary; on upgrade, leaves them alone.
set -e

case "$1" in
remove|0) ;;
*) exit 0 ;;
esac

units="picket-backend.service picket-agent.service"
if command -v systemctl >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
        systemctl stop $units >/dev/null 2>&1 || true
    fi
    systemctl --no-reload disable $units >/dev/null 2>&1 || true
fi
exit 0
