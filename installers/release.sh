#!/bin/sh
# Builds a release from a git tag (what `make release` runs):
#
#   installers/release.sh [--out DIR] [--allow-untagged] [--targets "linux/amd64 ..."]
#
# HEAD must be a v* tag (v1.2.3, v1.3.0-rc1) of a clean checkout: the version
# comes from it (installers/version.sh), so a release can be rebuilt from its
# tag. Into DIR (default dist/release-VERSION) it writes
#   - the agent's and the server's deb and rpm (amd64, arm64) and the
#     agent's MSI when wixl is there (installers/package.sh);
#   - evident-agent and evident-server for linux, darwin and windows (amd64,
#     arm64) as VERSION tarballs (zip for windows) with LICENSE and README;
#   - the man pages and shell completions (docs-VERSION.tar.gz);
#   - SHA256SUMS over all of them (`sha256sum -c SHA256SUMS` checks a
#     download).
# --allow-untagged builds from an untagged commit (a rehearsal): the version
# is then 0.0.0~gitN.gSHA or 1.2.3+N.gSHA and says so. --targets narrows the
# platforms (default all six; the Linux ones decide the packages' arches).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export GOWORK=off

out="" untagged=no targets="linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64"
while [ $# -gt 0 ]; do
	case "$1" in
	--out) [ $# -ge 2 ] || { echo "release.sh: --out needs a directory" >&2; exit 2; }; out=$2; shift 2 ;;
	--allow-untagged) untagged=yes; shift ;;
	--targets) [ $# -ge 2 ] || { echo "release.sh: --targets needs a list" >&2; exit 2; }; targets=$2; shift 2 ;;
	-h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "release.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
	esac
done

if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
	echo "release.sh: the checkout has uncommitted changes; a release is built from a clean tag" >&2
	exit 1
fi
tag=$(git describe --tags --exact-match --match 'v[0-9]*' HEAD 2>/dev/null || true)
if [ -z "$tag" ] && [ "$untagged" = no ]; then
	echo "release.sh: HEAD is not a v* tag (git tag -a v1.2.3 -m ...); --allow-untagged rehearses a release" >&2
	exit 1
fi
version=$(installers/version.sh)
out=${out:-dist/release-$version}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
when=$(git log -1 --format=%cI HEAD)
stamp=$(git log -1 --format=%ct HEAD)

arches=""
for target in $targets; do
	case "$target" in
	linux/amd64 | linux/arm64) arches="$arches ${target#*/}" ;;
	darwin/amd64 | darwin/arm64 | windows/amd64 | windows/arm64) ;;
	*) echo "release.sh: unknown target $target" >&2; exit 2 ;;
	esac
done

echo "release $version (${tag:-untagged} at $(git rev-parse --short HEAD)) into $out"
if [ -n "$arches" ]; then
	sh installers/package.sh --out "$out" --version "$version" --arch "${arches# }"
fi

for prog in evident-agent evident-server; do
	pkgdir=./${prog#evident-}/cmd/$prog
	for target in $targets; do
		goos=${target%/*} goarch=${target#*/}
		dir="$work/${prog}_${version}_${goos}_$goarch"
		mkdir -p "$dir"
		exe=$prog
		[ "$goos" = windows ] && exe=$prog.exe
		echo "building $prog $version for $target"
		CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch go build -trimpath \
			-ldflags "-s -w -X github.com/evident-dev/evident/internal/version.Version=$version" \
			-o "$dir/$exe" "$pkgdir"
		cp LICENSE README.md "$dir/"
		# Files dated by the commit, in name order, owned by nobody in
		# particular: the same tag makes the same archive.
		find "$dir" -exec touch -d "@$stamp" {} +
		base=$(basename "$dir")
		if [ "$goos" = windows ]; then
			(cd "$work" && find "$base" | LC_ALL=C sort | zip -qX -@ "$out/$base.zip")
		else
			tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$stamp" -cf - "$base" | gzip -9n >"$out/$base.tar.gz"
		fi
	done
done

# Man pages and completions, generated from a build for this machine (they
# run it for its help).
docs="$work/docs-$version"
mkdir -p "$docs"
for prog in evident-agent evident-server; do
	pkgdir=./${prog#evident-}/cmd/$prog
	go build -o "$work/$prog" "$pkgdir"
	go run ./installers/docgen --bin "$work/$prog" --version "$version" --date "$(printf '%.10s' "$when")" --out "$docs"
done
find "$docs" -exec touch -d "@$stamp" {} +
tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$stamp" -cf - "docs-$version" | gzip -9n >"$out/docs-$version.tar.gz"

(cd "$out" && rm -f SHA256SUMS && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%f\n' | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
echo "release $version:"
(cd "$out" && cat SHA256SUMS)
