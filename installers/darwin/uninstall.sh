#!/bin/sh
# Removes the Evident agent from a Mac.
#
#   sudo installers/darwin/uninstall.sh [--purge]
#
# Stops and unloads the LaunchDaemon, deletes the binary and the plist and
# forgets the package receipt. The configuration, the agent's state (its
# enrolled identity) and logs are kept unless --purge is given, so a
# reinstall resumes as the same device. A configuration profile installed by
# an MDM is removed through the MDM, not here.
set -eu

label=com.evident.agent
plist=/Library/LaunchDaemons/$label.plist
binary=/usr/local/bin/evident-agent
confdir="/Library/Application Support/Evident"
logdir=/Library/Logs/Evident

purge=false
for arg in "$@"; do
	case "$arg" in
	--purge) purge=true ;;
	-h | --help)
		echo "usage: $0 [--purge]   (--purge also deletes configuration, state and logs)"
		exit 0
		;;
	*)
		echo "uninstall.sh: unknown argument: $arg" >&2
		exit 2
		;;
	esac
done

if [ "$(id -u)" -ne 0 ]; then
	echo "uninstall.sh: run as root (sudo)" >&2
	exit 1
fi

# Not loaded is fine: the agent may already be stopped.
launchctl bootout "system/$label" 2>/dev/null || true
rm -f "$plist" "$binary"

if $purge; then
	rm -rf "$confdir" "$logdir"
fi

pkgutil --forget "$label" >/dev/null 2>&1 || true
echo "Evident agent removed$($purge && echo ' (configuration, state and logs purged)' || true)."
