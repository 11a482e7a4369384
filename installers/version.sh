#!/bin/sh
# Prints the version of the Evident packages, computed from git.
#
#   installers/version.sh          package version (deb, rpm, nfpm)
#   installers/version.sh --msi    Windows Installer ProductVersion (a.b.c)
#
# Package versions:
#   on tag v1.2.3                  1.2.3
#   N commits after v1.2.3         1.2.3+N.gSHA
#   on tag v1.3.0-rc1              1.3.0~rc1 (before 1.3.0)
#   no v* tag                      0.0.0~gitN.gSHA (N = commits in history)
# dpkg and rpm order them the same way: '~' sorts before anything, even the
# end of the string, so 0.0.0~git73.g... < 0.0.0 < 0.0.1 and a first tag
# upgrades every untagged build; '+N' adds a segment, so 1.2.3 < 1.2.3+1.g...
# < 1.2.3+12.g... < 1.2.4 (numbers compare numerically in both). The SHA only
# makes the version unique; with N before it, it never decides the order.
#
# MSI ProductVersion (a <= 255, b <= 255, c <= 65535; Windows Installer
# compares only these three fields):
#   on or after tag v1.2.3         1.2.3 (v1.3.0-rc1: 1.3.0; rebuilds of one
#                                  a.b.c must be installed over each other)
#   no v* tag                      0.0.N, so every commit upgrades the previous one
set -eu

cd "$(dirname "$0")/.."

msi=no
case "${1:-}" in
--msi) msi=yes ;;
"") ;;
*) echo "usage: $0 [--msi]" >&2; exit 2 ;;
esac

if ! git rev-parse --git-dir >/dev/null 2>&1; then
	echo "version.sh: not a git checkout; pass the version explicitly (package.sh --version V)" >&2
	exit 1
fi

if desc=$(git describe --tags --long --abbrev=7 --match 'v[0-9]*' 2>/dev/null); then
	# vX.Y.Z-N-gSHA (--long always prints N and the SHA)
	sha=${desc##*-g}
	rest=${desc%-g*}
	n=${rest##*-}
	tag=${rest%-*}
	base=${tag#v}
	if ! echo "$base" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+(-[A-Za-z0-9.]+)?$'; then
		echo "version.sh: tag $tag is not vMAJOR.MINOR.PATCH[-PRERELEASE]" >&2
		exit 1
	fi
	# A pre-release (v1.3.0-rc1) sorts before its release: 1.3.0~rc1.
	pkg=$(echo "$base" | sed 's/-/~/')
	if [ "$msi" = yes ]; then
		v=${base%%-*}
	elif [ "$n" = 0 ]; then
		v=$pkg
	else
		v="$pkg+$n.g$sha"
	fi
else
	n=$(git rev-list --count HEAD)
	sha=$(git rev-parse --short=7 HEAD)
	if [ "$msi" = yes ]; then
		v="0.0.$n"
	else
		v="0.0.0~git$n.g$sha"
	fi
fi

if [ "$msi" = yes ]; then
	old_ifs=$IFS
	IFS=.
	# shellcheck disable=SC2086
	set -- $v
	IFS=$old_ifs
	if [ "$1" -gt 255 ] || [ "$2" -gt 255 ] || [ "$3" -gt 65535 ]; then
		echo "version.sh: $v is out of range for a Windows Installer ProductVersion" >&2
		exit 1
	fi
fi
echo "$v"
