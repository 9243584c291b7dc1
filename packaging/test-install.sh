#!/usr/bin/env bash
# Installs the picket deb on this machine and checks what an operator relies on: the
# picket user, files, owners and modes, config files, both systemd units, the installed
# binary (including a real start as the picket user with the packaged config), an upgrade
# that keeps a locally edited config, remove (data kept) and purge (data gone). Also checks
# that the rpm carries the same scripts and config files.
#
# Needs root and dpkg (Debian or Ubuntu); skips otherwise. It purges the package again at
# the end and deletes the picket user if it created it, so it is safe to re-run. It never
# touches a picket package it did not install (any version without "pkgtest" in it).
#
#   sudo packaging/test-install.sh        # or: make test-install
set -euo pipefail
cd "$(dirname "$0")/.."

passed=0
say() { printf '== %s\n' "$*"; }
ok() { passed=$((passed + 1)); printf '   ok  %s\n' "$*"; }
fail() {
	printf 'FAIL: %s\n' "$*" >&2
	printf 'test-install: %d passed, 1 failed\n' "$passed"
	exit 1
}
skip() {
	printf 'test-install: SKIP: %s\n' "$*"
	exit 0
}

[ "$(id -u)" = 0 ] || skip "needs root to install a package with dpkg; run it with sudo"
command -v dpkg >/dev/null 2>&1 || skip "needs dpkg (Debian or Ubuntu)"
for c in go systemd-analyze rpm setpriv curl; do
	command -v "$c" >/dev/null 2>&1 || fail "$c not found; apt-get install systemd rpm util-linux curl (and Go)"
done

NFPM_MODULE=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
V1=0.0.1-pkgtest.1 # semver; the deb version becomes 0.0.1~pkgtest.1
V2=0.0.2-pkgtest.1
ARCH=$(dpkg --print-architecture)
USER_MARKER=/var/tmp/picket-test-install.created-user
UNITS="/usr/lib/systemd/system/picket-backend.service /usr/lib/systemd/system/picket-agent.service"
start=$SECONDS

# pkg_state prints "<status> <version>" of the installed picket package, or nothing.
pkg_state() { dpkg-query -W -f='${db:Status-Abbrev} ${Version}' picket 2>/dev/null || true; }

state=$(pkg_state)
case "$state" in
"" | "un "*) ;;
*pkgtest*) say "purging picket left over from an earlier run ($state)"; dpkg -P picket >/dev/null ;;
*) skip "picket is installed on this machine ($state); this test would replace it" ;;
esac

user_created=no
if ! getent passwd picket >/dev/null || [ -e "$USER_MARKER" ]; then
	user_created=yes
	touch "$USER_MARKER"
fi

tmp=$(mktemp -d /tmp/picket-test-install.XXXXXX)
chmod 0755 "$tmp" # the picket user reaches the notify socket below it
server_pid=""
notify_pid=""
cleanup() {
	rc=$?
	set +e
	for pid in $server_pid $notify_pid; do
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	case "$(pkg_state)" in *pkgtest*) dpkg -P picket >/dev/null 2>&1 ;; esac
	if [ "$user_created" = yes ]; then
		userdel picket 2>/dev/null
		groupdel picket 2>/dev/null
		rm -f "$USER_MARKER"
	fi
	rm -rf "$tmp"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# expect_stat PATH OWNER:GROUP MODE checks a path's owner and octal mode.
expect_stat() {
	local got
	got=$(stat -c '%U:%G %a' "$1" 2>/dev/null) || fail "$1 is missing"
	[ "$got" = "$2 $3" ] || fail "$1: owner and mode are $got, want $2 $3"
}
expect_gone() { [ ! -e "$1" ] || fail "$1 still exists"; }
expect_there() { [ -e "$1" ] || fail "$1 is gone"; }

# build VERSION: a static binary stamped like goreleaser's, and a deb and rpm of it.
build() {
	local v=$1 out="$tmp/$1"
	mkdir -p "$out"
	CGO_ENABLED=0 go build -trimpath -o "$out/picket" -ldflags "-s -w \
		-X github.com/picketmon/picket/app.version=$v \
		-X github.com/picketmon/picket/app.commit=test-install \
		-X github.com/picketmon/picket/app.date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
	for p in deb rpm; do
		VERSION=$v ARCH=$ARCH PICKET_BINARY="$out/picket" \
			"$tmp/bin/nfpm" pkg -f packaging/nfpm.yaml -p "$p" -t "$out/" >/dev/null
	done
	DEB=$(echo "$out"/*.deb)
	RPM=$(echo "$out"/*.rpm)
}

free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 30000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}

# --- build -------------------------------------------------------------------------
say "building nfpm, picket $V1 and $V2, and their packages"
GOBIN="$tmp/bin" go install "$NFPM_MODULE"
build "$V2"
DEB2=$DEB RPM2=$RPM
build "$V1"
DEB1=$DEB
if command -v file >/dev/null 2>&1; then
	file -b "$tmp/$V1/picket" | grep -q 'statically linked' || fail "binary is not static: $(file -b "$tmp/$V1/picket")"
	ok "binary is statically linked"
fi
say "built in $((SECONDS - start)) s"

# --- install -----------------------------------------------------------------------
t=$SECONDS
say "dpkg -i $(basename "$DEB1")"
dpkg -i "$DEB1" </dev/null >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -i failed"; }
[ "$(pkg_state)" = "ii  ${V1/-/\~}" ] || fail "package state after install: $(pkg_state)"
ok "installed ($(pkg_state))"

pw=$(getent passwd picket) || fail "no picket user"
IFS=: read -r _ _ uid gid _ home shell <<<"$pw"
[ "$uid" -lt 1000 ] || fail "picket is not a system user (uid $uid)"
[ "$home" = /var/lib/picket ] || fail "picket's home is $home"
case "$shell" in */nologin) ;; *) fail "picket's shell is $shell" ;; esac
[ "$(getent group picket | cut -d: -f3)" = "$gid" ] || fail "picket's primary group is not picket"
ok "system user picket (uid $uid, home $home, shell $shell)"

expect_stat /usr/bin/picket root:root 755
expect_stat /etc/picket root:root 755
expect_stat /etc/picket/backend.yml root:picket 640
expect_stat /etc/picket/agent.yml root:picket 640
expect_stat /var/lib/picket picket:picket 750
expect_stat /var/cache/picket picket:picket 750
for u in $UNITS; do expect_stat "$u" root:root 644; done
ok "owners and modes of the binary, config files, units, state and cache dirs"

conffiles=$(dpkg-query -W -f='${Conffiles}\n' picket | awk 'NF { print $1 }' | sort)
[ "$conffiles" = "$(printf '/etc/picket/agent.yml\n/etc/picket/backend.yml')" ] ||
	fail "conffiles are: $conffiles"
ok "conffiles: $(echo $conffiles)"

ls /etc/systemd/system/*.wants/picket-* >/dev/null 2>&1 && fail "a picket unit was enabled on install"
pgrep -u picket >/dev/null && fail "something runs as picket after install"
ok "no unit enabled, nothing started"

verify=$(systemd-analyze verify $UNITS 2>&1) || { echo "$verify"; fail "systemd-analyze verify failed"; }
if echo "$verify" | grep -q picket; then echo "$verify"; fail "systemd-analyze verify complains about a picket unit"; fi
ok "systemd-analyze verify picket-backend.service picket-agent.service"

out=$(/usr/bin/picket version) || fail "picket version failed"
case "$out" in "picket $V1 (commit test-install, built "*) ;; *) fail "picket version printed: $out" ;; esac
ok "/usr/bin/picket version: $out"
/usr/bin/picket server --help >"$tmp/help" 2>&1 || { cat "$tmp/help"; fail "picket server --help failed"; }
grep -q '^Usage: picket server' "$tmp/help" || fail "picket server --help printed no usage"
ok "/usr/bin/picket server --help ($(wc -l <"$tmp/help") lines)"

# Start the installed server the way the unit does (as picket, packaged config, a notify
# socket), on free loopback ports so it cannot clash with anything else on this machine.
say "starting /usr/bin/picket server as picket with /etc/picket/backend.yml"
api=$(free_port) agent=$(free_port) client=$(free_port) peer=$(free_port)
notify_dir="$tmp/notify"
mkdir -m 0700 "$notify_dir" && chown picket:picket "$notify_dir"
# setpriv execs the command, so $! below is the command's own pid.
as_picket="setpriv --reuid=picket --regid=picket --init-groups --"
notify_env=()
if command -v socat >/dev/null 2>&1; then
	$as_picket socat -u UNIX-RECV:"$notify_dir/notify.sock" OPEN:"$notify_dir/notify.log",creat,append &
	notify_pid=$!
	for _ in $(seq 50); do [ -S "$notify_dir/notify.sock" ] && break; sleep 0.1; done
	notify_env=(NOTIFY_SOCKET="$notify_dir/notify.sock")
fi
$as_picket env -i PATH=/usr/bin:/bin HOME=/var/lib/picket "${notify_env[@]}" \
	PICKET_BACKEND_API_LISTEN_ADDRESS="127.0.0.1:$api" \
	PICKET_BACKEND_API_URL="http://127.0.0.1:$api" \
	PICKET_BACKEND_AGENT_HOST=127.0.0.1 \
	PICKET_BACKEND_AGENT_PORT="$agent" \
	PICKET_BACKEND_ETCD_LISTEN_CLIENT_URLS="http://127.0.0.1:$client" \
	PICKET_BACKEND_ETCD_ADVERTISE_CLIENT_URLS="http://127.0.0.1:$client" \
	PICKET_BACKEND_ETCD_LISTEN_PEER_URLS="http://127.0.0.1:$peer" \
	PICKET_BACKEND_ETCD_INITIAL_ADVERTISE_PEER_URLS="http://127.0.0.1:$peer" \
	PICKET_BACKEND_ETCD_INITIAL_CLUSTER="default=http://127.0.0.1:$peer" \
	/usr/bin/picket server --config-file /etc/picket/backend.yml >"$tmp/server.log" 2>&1 &
server_pid=$!
ready=no
for _ in $(seq 300); do
	kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/server.log"; fail "picket server exited during start"; }
	if [ ${#notify_env[@]} -gt 0 ]; then
		grep -q READY=1 "$notify_dir/notify.log" 2>/dev/null && { ready=yes; break; }
	elif curl -fsS "http://127.0.0.1:$api/health" >/dev/null 2>&1; then
		ready=yes
		break
	fi
	sleep 0.1
done
[ "$ready" = yes ] || { cat "$tmp/server.log"; fail "picket server was not ready within 30 s"; }
curl -fsS "http://127.0.0.1:$api/health" >/dev/null || fail "GET /health failed after READY=1"
if [ ${#notify_env[@]} -gt 0 ]; then ok "server sent READY=1 and answers /health"; else ok "server answers /health (no socat: READY=1 not checked)"; fi
kill -TERM "$server_pid"
rc=0
wait "$server_pid" || rc=$?
server_pid=""
[ "$rc" = 0 ] || { cat "$tmp/server.log"; fail "picket server exited $rc on SIGTERM"; }
grep -q '"configuration loaded"' "$tmp/server.log" || fail "the server did not report reading /etc/picket/backend.yml"
expect_stat /var/lib/picket/etcd picket:picket 700
ok "server stopped cleanly on SIGTERM, its etcd data is in /var/lib/picket/etcd"

say "starting /usr/bin/picket agent as picket with /etc/picket/agent.yml"
[ ${#notify_env[@]} -gt 0 ] && : >"$notify_dir/notify.log"
agent_api=$(free_port)
# No backend listens on backend-url: the agent is ready without one and keeps retrying.
$as_picket env -i PATH=/usr/bin:/bin HOME=/var/lib/picket "${notify_env[@]}" \
	PICKET_AGENT_API_PORT="$agent_api" \
	PICKET_AGENT_BACKEND_URL="ws://127.0.0.1:$(free_port)" \
	/usr/bin/picket agent --config-file /etc/picket/agent.yml >"$tmp/agent.log" 2>&1 &
server_pid=$!
ready=no
for _ in $(seq 300); do
	kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/agent.log"; fail "picket agent exited during start"; }
	if [ ${#notify_env[@]} -gt 0 ]; then
		grep -q READY=1 "$notify_dir/notify.log" 2>/dev/null && { ready=yes; break; }
	elif curl -sS -o /dev/null "http://127.0.0.1:$agent_api/version" 2>/dev/null; then
		ready=yes
		break
	fi
	sleep 0.1
done
[ "$ready" = yes ] || { cat "$tmp/agent.log"; fail "picket agent was not ready within 30 s"; }
curl -fsS -o /dev/null "http://127.0.0.1:$agent_api/version" || fail "the agent API does not answer GET /version"
kill -TERM "$server_pid"
rc=0
wait "$server_pid" || rc=$?
server_pid=""
[ "$rc" = 0 ] || { cat "$tmp/agent.log"; fail "picket agent exited $rc on SIGTERM"; }
grep -q '"configuration loaded"' "$tmp/agent.log" || fail "the agent did not report reading /etc/picket/agent.yml"
expect_stat /var/cache/picket/agent/queue picket:picket 700
ok "agent sent READY=1, served its API, stopped cleanly; its queue is in /var/cache/picket/agent"
say "install checks took $((SECONDS - t)) s"

# --- upgrade -----------------------------------------------------------------------
t=$SECONDS
say "local edit of /etc/picket/backend.yml, then dpkg -i $(basename "$DEB2")"
printf '\n# local edit by test-install\nlog-level: "warn"\n' >>/etc/picket/backend.yml
edited=$(sha256sum </etc/picket/backend.yml)
$as_picket touch /var/lib/picket/test-install-marker
# Enabled by the operator before the upgrade: it must stay enabled, and go with removal.
systemctl enable picket-backend.service >/dev/null 2>&1 || fail "systemctl enable picket-backend.service failed"
dpkg -i "$DEB2" </dev/null >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "upgrade failed"; }
[ "$(pkg_state)" = "ii  ${V2/-/\~}" ] || fail "package state after upgrade: $(pkg_state)"
ok "upgraded ($(pkg_state))"
[ "$(sha256sum </etc/picket/backend.yml)" = "$edited" ] || fail "the upgrade changed the edited backend.yml"
ls /etc/picket/*.dpkg-* >/dev/null 2>&1 && fail "the upgrade left $(ls /etc/picket/*.dpkg-*)"
changed=$(dpkg -V picket || true)
[ "$changed" = "??5?????? c /etc/picket/backend.yml" ] || fail "dpkg -V picket: $changed"
ok "edited backend.yml kept as is (dpkg -V: $changed)"
expect_stat /etc/picket/backend.yml root:picket 640
expect_stat /var/lib/picket picket:picket 750
expect_there /var/lib/picket/test-install-marker
expect_there /var/lib/picket/etcd
case "$(/usr/bin/picket version)" in "picket $V2 "*) ;; *) fail "after upgrade: $(/usr/bin/picket version)" ;; esac
[ -L /etc/systemd/system/multi-user.target.wants/picket-backend.service ] || fail "the upgrade disabled picket-backend.service"
ok "new binary; state, modes and the operator's enabled unit kept"
say "upgrade checks took $((SECONDS - t)) s"

# --- remove and purge ---------------------------------------------------------------
t=$SECONDS
say "dpkg -r picket"
dpkg -r picket >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -r failed"; }
[ "$(pkg_state)" = "rc  ${V2/-/\~}" ] || fail "package state after remove: $(pkg_state)"
expect_gone /usr/bin/picket
for u in $UNITS; do expect_gone "$u"; done
ls /etc/systemd/system/*.wants/picket-* >/dev/null 2>&1 && fail "remove left a picket unit enabled"
expect_there /var/lib/picket/test-install-marker
expect_there /var/lib/picket/etcd
grep -q '^# local edit by test-install' /etc/picket/backend.yml || fail "remove lost the edited backend.yml"
getent passwd picket >/dev/null || fail "remove deleted the picket user"
ok "removed: binary and units gone, unit disabled; state, config and user kept"

say "dpkg -P picket"
dpkg -P picket >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -P failed"; }
[ -z "$(pkg_state | grep -v '^un')" ] || fail "package state after purge: $(pkg_state)"
expect_gone /var/lib/picket
expect_gone /var/cache/picket
expect_gone /etc/picket
getent passwd picket >/dev/null || fail "purge deleted the picket user (documented: kept)"
ok "purged: state, cache and config gone; picket user kept as documented"

say "dpkg -i again with the picket user already there, then purge"
dpkg -i "$DEB1" </dev/null >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "reinstall failed"; }
[ "$(getent passwd picket | cut -d: -f3)" = "$uid" ] || fail "reinstall changed the picket user"
expect_stat /var/lib/picket picket:picket 750
dpkg -P picket >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "second purge failed"; }
ok "reinstall reuses the user (uid $uid); purge again"
say "remove and purge checks took $((SECONDS - t)) s"

# --- rpm ------------------------------------------------------------------------------
say "rpm -qp --scripts --configfiles $(basename "$RPM2")"
rpm -qp --scripts --configfiles "$RPM2" >"$tmp/rpm.txt" 2>&1 || { cat "$tmp/rpm.txt"; fail "rpm -qp failed"; }
# Split the scriptlets into one file each.
rpm -qp --scripts "$RPM2" | awk -v dir="$tmp" '
	/^(preinstall|postinstall|preuninstall|postuninstall) scriptlet \(using \/bin\/sh\):$/ { out = dir "/rpm." $1; next }
	out != "" { print > out }
'
rpm -qp --configfiles "$RPM2" >"$tmp/rpm.configfiles"
trim() { awk '{ l[NR] = $0 } END { n = NR; while (n > 0 && l[n] == "") n--; for (i = 1; i <= n; i++) print l[i] }' "$1"; }
dpkg-deb -e "$DEB2" "$tmp/debian"
for pair in preinstall:preinst:preinstall postinstall:postinst:postinstall \
	preremove:prerm:preuninstall postremove:postrm:postuninstall; do
	IFS=: read -r src deb rpm <<<"$pair"
	[ -f "$tmp/rpm.$rpm" ] || fail "the rpm has no $rpm scriptlet"
	diff <(trim "packaging/scripts/$src.sh") <(trim "$tmp/rpm.$rpm") || fail "rpm $rpm scriptlet differs from packaging/scripts/$src.sh"
	cmp -s "packaging/scripts/$src.sh" "$tmp/debian/$deb" || fail "deb $deb differs from packaging/scripts/$src.sh"
done
ok "rpm scriptlets and deb maintainer scripts are packaging/scripts/*.sh"
[ "$(sort "$tmp/rpm.configfiles")" = "$(sort "$tmp/debian/conffiles")" ] ||
	fail "rpm config files ($(echo $(cat "$tmp/rpm.configfiles"))) differ from deb conffiles ($(echo $(cat "$tmp/debian/conffiles")))"
rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$RPM2" | grep -qx 'cn /etc/picket/backend.yml' ||
	fail "backend.yml is not %config(noreplace) in the rpm"
rpm -qlvp "$RPM2" | grep -Eq '^drwxr-x--- +[0-9]+ +picket +picket .* /var/lib/picket$' ||
	fail "the rpm does not give /var/lib/picket to picket"
ok "rpm config files = deb conffiles ($(echo $(cat "$tmp/rpm.configfiles"))), %config(noreplace), /var/lib/picket owned by picket"

say "done in $((SECONDS - start)) s"
printf 'test-install: %d passed, 0 failed\n' "$passed"
