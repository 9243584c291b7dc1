#!/bin/sh
# Picket preinstall (deb preinst: install|upgrade|abort-upgrade; rpm %pre: 1 install,
# 2 upgrade). Creates the picket system user and group before the package's files are
# unpacked, so that its directories and config files can belong to them. Idempotent.
set -e

if ! getent group picket >/dev/null 2>&1; then
    groupadd --system picket
fi
if ! getent passwd picket >/dev/null 2>&1; then
    nologin=/usr/sbin/nologin
    [ -x "$nologin" ] || nologin=/sbin/nologin
    useradd --system --gid picket --home-dir /var/lib/picket --no-create-home \
        --shell "$nologin" --comment "Picket monitoring" picket
fi
exit 0
