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

# Mark the removal in the data directory (which `remove` keeps), so a later
# reinstall, which dpkg runs as "configure OLD-VERSION" like an upgrade, starts
# the service instead of only try-restarting a stopped one.
touch /var/lib/evident-agent/.package-removed 2>/dev/null || true

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl stop evident-agent.service || true
	systemctl disable evident-agent.service >/dev/null 2>&1 || true
fi
exit 0
