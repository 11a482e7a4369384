#!/bin/sh
# Builds the agent's installable packages into dist/ (what `make package` runs).
#
#   installers/package.sh [--out DIR] [--version V] [--only deb|rpm|msi] [--arch "amd64 arm64"]
#                         [--package agent|server]
#
# Linux: deb and rpm for each --arch (default amd64 and arm64) with nfpm, of
# the agent (installers/linux/nfpm.yaml) and of the server
# (installers/linux/nfpm-server.yaml); --package builds one of them. Windows: the amd64 MSI with
# installers/windows/build-msi.sh (needs wixl; skipped with a message when it
# is missing, unless --only msi). The version comes from installers/version.sh
# unless --version gives it. Binaries are static (CGO_ENABLED=0) and carry the
# version (evident-agent --version).
#
# Needs Go and git; the MSI also needs wixl and msitools. nfpm is run at a
# pinned version through `go run` (set NFPM to use an installed nfpm instead).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export GOWORK=off

usage() {
	echo "usage: $0 [--out DIR] [--version V] [--only deb|rpm|msi] [--arch \"amd64 arm64\"] [--package agent|server]" >&2
	exit 2
}

out=dist version="" only="" arches="amd64 arm64" packages="agent server"
while [ $# -gt 0 ]; do
	case "$1" in
	--out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
	--version) [ $# -ge 2 ] || usage; version=$2; shift 2 ;;
	--only) [ $# -ge 2 ] || usage; only=$2; shift 2 ;;
	--arch) [ $# -ge 2 ] || usage; arches=$2; shift 2 ;;
	--package) [ $# -ge 2 ] || usage; packages=$2; shift 2 ;;
	-h | --help) usage ;;
	*) echo "package.sh: unknown argument: $1" >&2; usage ;;
	esac
done
case "$only" in
"" | deb | rpm | msi) ;;
*) echo "package.sh: --only takes deb, rpm or msi" >&2; usage ;;
esac
for p in $packages; do
	case "$p" in
	agent | server) ;;
	*) echo "package.sh: --package takes agent or server" >&2; usage ;;
	esac
done
for a in $arches; do
	case "$a" in
	amd64 | arm64) ;;
	*) echo "package.sh: unsupported Linux arch $a (amd64, arm64)" >&2; exit 2 ;;
	esac
done

msiversion=""
if [ -z "$version" ]; then
	version=$(installers/version.sh)
	msiversion=$(installers/version.sh --msi)
fi
# dpkg and rpm both reject '-' (it separates the release), and '/' or spaces
# would break file names.
if ! echo "$version" | grep -Eq '^[0-9][A-Za-z0-9.+~]*$'; then
	echo "package.sh: version '$version' must start with a digit and use only A-Z a-z 0-9 . + ~" >&2
	exit 2
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

want() { [ -z "$only" ] || [ "$only" = "$1" ]; }

build() { # build GOOS GOARCH OUTPUT [PROGRAM]
	prog=${4:-evident-agent}
	pkgdir=./${prog#evident-}/cmd/$prog # ./agent/cmd/evident-agent, ./server/cmd/evident-server
	echo "building $prog $version for $1/$2"
	CGO_ENABLED=0 GOOS=$1 GOARCH=$2 go build -trimpath \
		-ldflags "-s -w -X github.com/evident-dev/evident/internal/version.Version=$version" \
		-o "$3" "$pkgdir"
}

nfpm() {
	if [ -n "${NFPM:-}" ]; then
		"$NFPM" "$@"
	else
		go run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2 "$@"
	fi
}

made=
if want deb || want rpm; then
	for arch in $arches; do
		# nfpm.yaml's sources are relative to this staging directory.
		stage="$work/linux-$arch"
		mkdir -p "$stage"
		ln -s "$root/installers" "$stage/installers"
		cp README.md "$stage/README.md"
		cp LICENSE "$stage/LICENSE"
		# One changelog entry for the version built, release 1 as nfpm.yaml
		# sets (chglog's format, which nfpm turns into the deb's and the
		# rpm's), dated by its commit so a rebuild of the same commit is the
		# same package.
		commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
		when=$(git log -1 --format=%cI HEAD 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)
		printf -- '- semver: "%s-1"\n  date: %s\n  packager: Evident <evident@example.invalid>\n  deb:\n    urgency: medium\n    distributions: [stable]\n  changes:\n    - commit: %s\n      note: "Built from commit %s; the changes are in the project history."\n' \
			"$version" "$when" "$commit" "$commit" >"$stage/changelog.yaml"
		for p in $packages; do
			name=evident-$p
			conf=installers/linux/nfpm.yaml
			[ "$p" = agent ] || conf=installers/linux/nfpm-$p.yaml
			build linux "$arch" "$stage/$name" "$name"
			# The man page and shell completions, from the program's own help
			# (installers/docgen), run on a build of this machine's arch.
			if [ ! -f "$work/docs/$name.1.gz" ]; then
				mkdir -p "$work/host" "$work/docs"
				build "$(go env GOOS)" "$(go env GOARCH)" "$work/host/$name" "$name" >/dev/null
				go run ./installers/docgen --bin "$work/host/$name" --version "$version" \
					--date "$(printf '%.10s' "$when")" --out "$work/docs"
				gzip -9n "$work/docs/$name.1"
			fi
			ln -sfn "$work/docs" "$stage/docs"
			for fmt in deb rpm; do
				want "$fmt" || continue
				case "$fmt/$arch" in
				deb/*) f="$out/${name}_${version}_$arch.deb" ;;
				rpm/amd64) f="$out/$name-$version-1.x86_64.rpm" ;;
				rpm/arm64) f="$out/$name-$version-1.aarch64.rpm" ;;
				esac
				(cd "$stage" && VERSION=$version ARCH=$arch nfpm package --config "$conf" --packager "$fmt" --target "$f") >"$work/nfpm.log" 2>&1 || {
					cat "$work/nfpm.log" >&2
					echo "package.sh: nfpm failed to make $f" >&2
					exit 1
				}
				made="$made $f"
			done
		done
	done
fi

if want msi && echo " $packages " | grep -q ' agent '; then
	skip=
	if [ ! -x installers/windows/build-msi.sh ]; then
		skip="installers/windows/build-msi.sh is not there"
	elif ! command -v wixl >/dev/null 2>&1; then
		skip="wixl is not installed (Debian/Ubuntu: apt-get install wixl msitools)"
	fi
	if [ -n "$skip" ]; then
		if [ "$only" = msi ]; then
			echo "package.sh: cannot build the MSI: $skip" >&2
			exit 1
		fi
		echo "package.sh: skipping the MSI: $skip" >&2
	else
		bin="$work/windows-amd64/evident-agent.exe"
		build windows amd64 "$bin"
		f="$out/evident-agent-$version-amd64.msi"
		if [ -n "$msiversion" ]; then
			installers/windows/build-msi.sh --version "$version" --msi-version "$msiversion" --binary "$bin" --out "$f"
		else
			installers/windows/build-msi.sh --version "$version" --binary "$bin" --out "$f"
		fi
		made="$made $f"
	fi
fi

echo "made (version $version):"
for f in $made; do
	echo "  $f"
done
