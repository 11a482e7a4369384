#!/bin/sh
# evident-server rpm: %post. $1 = 1 on first install, 2 (or more) on
# upgrade. (The deb has its own scripts under installers/linux/deb.) Makes
# the evident-server account and its directories; with systemd running,
# enables and starts the service on install and restarts it on upgrade.
set -e

user=evident-server
datadir=/var/lib/evident-server
unit=evident-server.service

if ! getent passwd "$user" >/dev/null; then
	useradd --system --user-group --home-dir "$datadir" --no-create-home --shell /sbin/nologin "$user"
fi
mkdir -p "$datadir"
chown "$user:$user" "$datadir"
chmod 0700 "$datadir"
if [ ! -d /etc/evident-server ]; then
	mkdir -p /etc/evident-server
	chown "root:$user" /etc/evident-server
	chmod 0750 /etc/evident-server
fi

if [ ! -d /run/systemd/system ] || ! command -v systemctl >/dev/null 2>&1; then
	echo "evident-server: systemd is not running; the service was not enabled or started."
	exit 0
fi
systemctl daemon-reload || true
if [ "$1" -ge 2 ] 2>/dev/null; then
	systemctl try-restart "$unit" || echo "evident-server: could not restart $unit (see journalctl -u evident-server)" >&2
else
	systemctl enable "$unit" >/dev/null 2>&1 || true
	systemctl start "$unit" || echo "evident-server: could not start $unit (see journalctl -u evident-server)" >&2
	echo "evident-server: settings in /etc/evident/server.yaml. Make an enrollment secret for agents with"
	echo "  sudo -u $user evident-server secret create --label first"
fi
exit 0
