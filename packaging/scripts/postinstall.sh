#!/bin/sh
# Picket postinstall (deb postinst: configure <old-version>|abort-*; rpm %post: 1 install,
# 2 upgrade). Never enables or starts a service, and does not restart a running one on
# upgrade: in a cluster the operator decides when each member restarts.
set -e

case "$1" in
configure) [ -n "$2" ] && upgrade=yes || upgrade=no ;;
1) upgrade=no ;;
2) upgrade=yes ;;
*) exit 0 ;;
esac

# The package sets these owners too; this repairs them if an admin or an older package
# changed them. Not recursive: the state dir can be large and its contents are the
# service's own business.
chown picket:picket /var/lib/picket /var/cache/picket

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    if [ "$upgrade" = yes ]; then
        for unit in picket-backend.service picket-agent.service; do
            if systemctl is-active --quiet "$unit"; then
                echo "picket: $unit still runs the previous version; restart it when convenient: systemctl restart $unit"
            fi
        done
    fi
fi
if [ "$upgrade" = no ]; then
    echo "picket: nothing was enabled or started. Edit /etc/picket/backend.yml, then run: systemctl enable --now picket-backend"
fi
exit 0
