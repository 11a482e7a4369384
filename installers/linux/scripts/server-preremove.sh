#!/bin/sh
# evident-server rpm: %preun. $1 = 0 on erase (stop and disable the
# service), 1 (or more) when an upgrade removes the old version (leave it).
set -e

if [ "$1" = 0 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl stop evident-server.service || true
	systemctl disable evident-server.service >/dev/null 2>&1 || true
fi
exit 0
