#!/bin/sh
# Builds the macOS installer package of the agent: a universal (x86_64 +
# arm64) evident-agent, its LaunchDaemon and the pre/postinstall scripts,
# wrapped by productbuild for macOS 11 or later.
#
#   installers/darwin/build-pkg.sh --version V --out FILE [--binary PATH]
#   installers/darwin/build-pkg.sh --layout-only DIR --binary PATH
#
# --binary uses a ready (universal) agent instead of building one.
# --layout-only lays the payload out under DIR and stops; it runs on any OS
# and is what the tests check.
# Signing: PKG_SIGN_IDENTITY (a "Developer ID Installer: ..." identity in the
# keychain) signs the product with productsign. Notarization is left to the
# release job (xcrun notarytool).
#
# Needs macOS with the Xcode command line tools (pkgbuild, productbuild, lipo)
# and Go, except for --layout-only.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
label=com.evident.agent

usage() {
	echo "usage: $0 --version V --out FILE [--binary PATH]" >&2
	echo "       $0 --layout-only DIR --binary PATH" >&2
	exit 2
}

die() {
	echo "build-pkg.sh: $*" >&2
	exit 1
}

# layout ROOT BINARY: the payload, as installed relative to /.
layout() {
	root=$1 bin=$2
	mkdir -p "$root/usr/local/bin" "$root/Library/LaunchDaemons"
	cp "$bin" "$root/usr/local/bin/evident-agent"
	cp "$here/$label.plist" "$root/Library/LaunchDaemons/$label.plist"
	chmod 0755 "$root/usr" "$root/usr/local" "$root/usr/local/bin" "$root/usr/local/bin/evident-agent" \
		"$root/Library" "$root/Library/LaunchDaemons"
	chmod 0644 "$root/Library/LaunchDaemons/$label.plist"
}

# build_universal VERSION OUT: builds darwin/amd64 and darwin/arm64 agents
# and joins them into one universal binary.
build_universal() {
	v=$1 out=$2
	for arch in amd64 arm64; do
		(cd "$repo" && CGO_ENABLED=0 GOOS=darwin GOARCH=$arch GOWORK=off go build -trimpath \
			-ldflags "-s -w -X github.com/evident-dev/evident/internal/version.Version=$v" \
			-o "$out.$arch" ./agent/cmd/evident-agent) || die "go build darwin/$arch failed"
	done
	lipo -create -output "$out" "$out.amd64" "$out.arm64" || die "lipo failed"
	rm -f "$out.amd64" "$out.arm64"
}

version= out= binary= layout_dir=
while [ $# -gt 0 ]; do
	case "$1" in
	--version) [ $# -ge 2 ] || usage; version=$2; shift 2 ;;
	--out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
	--binary) [ $# -ge 2 ] || usage; binary=$2; shift 2 ;;
	--layout-only) [ $# -ge 2 ] || usage; layout_dir=$2; shift 2 ;;
	-h | --help) usage ;;
	*) echo "build-pkg.sh: unknown argument: $1" >&2; usage ;;
	esac
done

if [ -n "$binary" ] && [ ! -f "$binary" ]; then
	die "no such binary: $binary"
fi

if [ -n "$layout_dir" ]; then
	[ -n "$binary" ] || die "--layout-only needs --binary"
	layout "$layout_dir" "$binary"
	exit 0
fi

[ -n "$version" ] && [ -n "$out" ] || usage
if [ "$(uname -s)" != Darwin ] ||
	! command -v pkgbuild >/dev/null 2>&1 ||
	! command -v productbuild >/dev/null 2>&1 ||
	! command -v lipo >/dev/null 2>&1; then
	echo "build-pkg.sh needs macOS (pkgbuild, productbuild, lipo)" >&2
	exit 1
fi

outdir=$(cd "$(dirname "$out")" && pwd) || die "no such directory: $(dirname "$out")"
out="$outdir/$(basename "$out")"
work=$(mktemp -d)
tmp="$out.tmp.$$"
trap 'rm -rf "$work" "$tmp"' EXIT
trap 'exit 1' INT TERM

if [ -z "$binary" ]; then
	binary="$work/evident-agent"
	build_universal "$version" "$binary"
fi
archs=$(lipo -archs "$binary" 2>/dev/null || true)
case " $archs " in
*" x86_64 "*" arm64 "* | *" arm64 "*" x86_64 "*) ;;
*) die "$binary is not universal (architectures: ${archs:-unknown}); distribution.xml promises x86_64 and arm64" ;;
esac

layout "$work/root" "$binary"
mkdir "$work/scripts" "$work/pkgs"
cp "$here/scripts/preinstall" "$here/scripts/postinstall" "$work/scripts/"
chmod 0755 "$work/scripts/preinstall" "$work/scripts/postinstall"

component=evident-agent-component.pkg
pkgbuild --root "$work/root" --scripts "$work/scripts" \
	--identifier "$label" --version "$version" --install-location / \
	--ownership recommended \
	"$work/pkgs/$component" || die "pkgbuild failed"

sed -e "s|__VERSION__|$version|g" -e "s|__PKG__|$component|g" \
	"$here/distribution.xml" >"$work/distribution.xml"
productbuild --distribution "$work/distribution.xml" --package-path "$work/pkgs" \
	"$work/product.pkg" || die "productbuild failed"

if [ -n "${PKG_SIGN_IDENTITY:-}" ]; then
	productsign --sign "$PKG_SIGN_IDENTITY" "$work/product.pkg" "$work/signed.pkg" ||
		die "productsign failed"
	mv "$work/signed.pkg" "$work/product.pkg"
fi

cp "$work/product.pkg" "$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$out"
echo "$out"
