#!/bin/sh
# evident-agent package: after install or upgrade (deb postinst, rpm %post).
#   deb: $1 = configure (with $2 = the previous version on upgrade), or
#        abort-upgrade / abort-remove / abort-deconfigure when dpkg rolls back.
#   rpm: $1 = 1 on first install, 2 (or more) on upgrade.
# This script must never fail the package transaction: every service action
# is best effort, and nothing touches services when systemd is not running
# (container, chroot, image build).
set -e

conf=/etc/evident/agent.yaml
datadir=/var/lib/evident-agent
unit=evident-agent.service

upgrade=no
case "$1" in
configure) if [ -n "$2" ]; then upgrade=yes; fi ;;
abort-upgrade | abort-remove | abort-deconfigure) upgrade=yes ;;
1) ;;
[2-9] | [1-9][0-9]*) upgrade=yes ;;
*) exit 0 ;;
esac

# The config carries the enrollment secret; the data dir the device identity.
mkdir -p /etc/evident "$datadir"
# Reinstalled after a removal (not an upgrade): start it like a first install.
if [ -e "$datadir/.package-removed" ]; then
	upgrade=no
	rm -f "$datadir/.package-removed"
fi
chown root:root /etc/evident "$datadir" || true
chmod 0700 /etc/evident "$datadir" || true
if [ -f "$conf" ]; then
	chown root:root "$conf" || true
	chmod 0600 "$conf" || true
fi

howto() {
	echo "evident-agent: not configured yet. Enroll this device with"
	echo "  sudo evident-agent install --server HOST:PORT --enroll-secret TOKEN"
	echo "or set server and enroll_secret in $conf, then run"
	echo "  sudo systemctl start evident-agent"
}

if [ ! -d /run/systemd/system ] || ! command -v systemctl >/dev/null 2>&1; then
	echo "evident-agent: systemd is not running; the service was not enabled or started."
	exit 0
fi

systemctl daemon-reload || true
systemctl enable "$unit" >/dev/null 2>&1 || echo "evident-agent: could not enable $unit" >&2

# `config check` exits 0 only when the agent can run (enrolled, or server and
# enroll_secret configured), 1 when it is not configured yet and 78 when a
# setting is invalid, with the reason on stderr. Anything else (an older
# binary without the command) also counts as "not configured": start
# nothing, say how to configure.
status=0
reason=$(/usr/bin/evident-agent config check --quiet 2>&1) || status=$?
if [ "$status" -eq 0 ]; then
	if [ "$upgrade" = yes ]; then
		systemctl try-restart "$unit" || echo "evident-agent: could not restart $unit (see journalctl -u evident-agent)" >&2
	else
		systemctl start "$unit" || echo "evident-agent: could not start $unit (see journalctl -u evident-agent)" >&2
	fi
else
	if [ "$status" -eq 1 ] || [ "$status" -eq 78 ]; then
		printf '%s\n' "$reason" | head -n 1
	fi
	howto
fi
exit 0
