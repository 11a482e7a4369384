#!/bin/sh
# evident-agent package: before removal (deb prerm, rpm %preun).
#   deb: $1 = remove on removal; upgrade / deconfigure / failed-upgrade otherwise.
#   rpm: $1 = 0 on erase, 1 (or more) when an upgrade removes the old version.
# On removal, stop and disable the service when systemd is running; on upgrade
# leave it running (the new package's postinstall restarts it).
set -e

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl stop evident-agent.service || true
	systemctl disable evident-agent.service >/dev/null 2>&1 || true
fi
exit 0
