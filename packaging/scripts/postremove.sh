#!/bin/sh
# Picket postremove (deb postrm: remove|purge|upgrade|failed-upgrade|abort-install|
# abort-upgrade|disappear; rpm %postun: 0 erase, 1 upgrade).
#
# Removing the package keeps the state (/var/lib/picket), the cache (/var/cache/picket),
# the config files and the picket user. Purging a deb (dpkg -P, apt purge) also deletes
# the state and cache dirs; dpkg deletes the config files. RPM has no purge: after
# rpm -e / dnf remove, delete /var/lib/picket and /var/cache/picket by hand if you want
# the data gone (rpm keeps edited config files as *.rpmsave).
#
# The picket user and group are kept even on purge, as Debian recommends: files outside
# these dirs may still belong to them, and a new account could inherit their ids. Remove
# them with `userdel picket` if you are sure.
set -e

case "$1" in
purge)
    rm -rf /var/lib/picket /var/cache/picket
    # dpkg has deleted the config files; keep anything else an admin put there.
    rmdir /etc/picket 2>/dev/null || true
    ;;
esac

case "$1" in
remove|purge|0)
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        systemctl daemon-reload >/dev/null 2>&1 || true
    fi
    ;;
esac
exit 0
