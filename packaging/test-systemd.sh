#!/usr/bin/env bash
# Runs the picket deb under a real systemd: boots a minimal Debian 12 root with
# systemd-nspawn, installs the package, starts picket-backend and picket-agent through
# their units (Type=notify, the hardening, the picket user), checks that they become
# active, serve, log in journald's form and stop cleanly, and prints systemd's
# exposure score for both. systemd-analyze verify (packaging/test-install.sh) only checks
# the syntax; this catches a unit that parses but does not run.
#
# Opt-in, not part of .ci/run: it needs root, debootstrap and systemd-container
# (apt-get install debootstrap systemd-container) and fetches Debian packages the first
# time (about 2 minutes; the base root is kept in /var/tmp/picket-systemd-test/base).
#
#   sudo packaging/test-systemd.sh [picket_*.deb]     # default: make deb
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
	printf 'FAIL: %s\n' "$*" >&2
	exit 1
}
[ "$(id -u)" = 0 ] || { echo "test-systemd: SKIP: needs root"; exit 0; }
for c in debootstrap systemd-nspawn; do
	command -v "$c" >/dev/null 2>&1 || fail "$c not found; apt-get install debootstrap systemd-container"
done

deb=${1:-}
if [ -z "$deb" ]; then
	rm -rf dist/nfpm
	make deb >/dev/null
	deb=$(echo dist/nfpm/*.deb)
fi
[ -f "$deb" ] || fail "no deb at $deb"

dir=/var/tmp/picket-systemd-test
base=$dir/base
if [ ! -x "$base/usr/bin/systemctl" ] || [ ! -e "$base/.complete" ]; then
	echo "== debootstrap Debian 12 into $base (once)"
	rm -rf "$base"
	mkdir -p "$dir"
	debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,curl \
		bookworm "$base" http://deb.debian.org/debian >"$dir/debootstrap.log" 2>&1 ||
		{ tail -20 "$dir/debootstrap.log"; fail "debootstrap failed"; }
	# debootstrap writes no /etc/hosts; every real system has one.
	printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$base/etc/hosts"
	touch "$base/.complete"
fi

root=$dir/run
rm -rf "$root"
cp -a "$base" "$root"
trap 'rm -rf "$root"' EXIT

cp "$deb" "$root/tmp/picket.deb"
chroot "$root" dpkg -i /tmp/picket.deb >"$dir/dpkg.log" 2>&1 || { cat "$dir/dpkg.log"; fail "dpkg -i failed"; }

# The checks run inside the booted container, as a oneshot unit that powers it off.
cat >"$root/usr/local/bin/picket-smoke" <<'EOF'
#!/bin/bash
exec >/root/smoke.txt 2>&1
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fi; }
timeout 60 systemctl start picket-backend.service
check "picket-backend.service is active after start (READY=1)" \
	'[ "$(systemctl show -P ActiveState picket-backend.service)" = active ]'
check "the backend answers GET /health on :8080" 'curl -fsS -o /dev/null localhost:8080/health'
timeout 60 systemctl start picket-agent.service
check "picket-agent.service is active after start (READY=1)" \
	'[ "$(systemctl show -P ActiveState picket-agent.service)" = active ]'
check "the agent answers GET /version on 127.0.0.1:3031" 'curl -fsS -o /dev/null 127.0.0.1:3031/version'
check "both run as picket" \
	'[ "$(stat -c %U /proc/"$(systemctl show -P MainPID picket-backend.service)")" = picket ] &&
	 [ "$(stat -c %U /proc/"$(systemctl show -P MainPID picket-agent.service)")" = picket ]'
check "the backend's state is in /var/lib/picket/etcd" '[ -d /var/lib/picket/etcd ]'
sleep 1
timeout 60 systemctl stop picket-agent.service picket-backend.service
for u in picket-backend.service picket-agent.service; do
	check "$u stopped cleanly" \
		'[ "$(systemctl show -P Result $u)" = success ] && [ "$(systemctl show -P ExecMainStatus $u)" = 0 ]'
done
check "logs are text without their own timestamps" \
	'journalctl -u picket-backend.service -o cat | grep -q "^level=INFO msg=\"picket server ready\""'
echo "--- journal"
journalctl -u picket-backend.service -u picket-agent.service --no-pager -o short | head -30
echo "--- exposure"
systemd-analyze security --no-pager picket-backend.service picket-agent.service | grep Overall
echo "--- end"
systemctl poweroff
EOF
chmod 0755 "$root/usr/local/bin/picket-smoke"
cat >"$root/etc/systemd/system/picket-smoke.service" <<'EOF'
[Unit]
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/usr/local/bin/picket-smoke
[Install]
WantedBy=multi-user.target
EOF
chroot "$root" systemctl enable picket-smoke.service >/dev/null 2>&1

echo "== booting $(basename "$deb") under systemd-nspawn"
start=$SECONDS
timeout 300 systemd-nspawn -q -D "$root" -b --register=no --keep-unit --private-network \
	>"$dir/boot.log" 2>&1 || true
[ -f "$root/root/smoke.txt" ] || { tail -30 "$dir/boot.log"; fail "the container left no results"; }
cat "$root/root/smoke.txt"
grep -q '^--- end' "$root/root/smoke.txt" || fail "the checks did not finish"
passed=$(grep -c '^ok ' "$root/root/smoke.txt" || true)
failed=$(grep -c '^FAIL ' "$root/root/smoke.txt" || true)
echo "== took $((SECONDS - start)) s"
printf 'test-systemd: %d passed, %d failed\n' "$passed" "$failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
