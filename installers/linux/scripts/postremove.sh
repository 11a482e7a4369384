#!/bin/sh
# evident-agent package: after removal (deb postrm, rpm %postun).
#   deb: $1 = remove, purge, upgrade, disappear, failed-upgrade, abort-install,
#        abort-upgrade.
#   rpm: $1 = 0 on erase, 1 (or more) after an upgrade.
# deb purge deletes what dpkg leaves behind: the config directory (dpkg itself
# removes the conffile agent.yaml) and the data directory with the device
# identity and outbox. rpm has no purge: on erase rpm keeps an edited
# agent.yaml as agent.yaml.rpmsave and leaves /var/lib/evident-agent (files
# the agent created are not the package's); delete them by hand to forget the
# device.
set -e

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload || true
fi

if [ "$1" = purge ]; then
	rm -rf /var/lib/evident-agent /etc/evident
fi
exit 0
