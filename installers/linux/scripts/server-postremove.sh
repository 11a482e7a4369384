#!/bin/sh
# evident-server rpm: %postun. The data directory (evidence, the CA) and the
# account are kept on erase: delete /var/lib/evident-server by hand to forget
# them.
set -e

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload || true
fi
exit 0
