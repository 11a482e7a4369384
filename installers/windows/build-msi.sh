#!/bin/sh
# Builds the Windows Installer package of the agent with wixl (msitools).
#
#   installers/windows/build-msi.sh --version V --binary PATH --out FILE [--msi-version A.B.C]
#
# V is the package version (installers/version.sh). Windows Installer wants a
# ProductVersion of the form a.b.c (a, b <= 255, c <= 65535); it is derived
# from V (see msi_version) unless --msi-version gives it.
#
# Signing: when SIGN_CERT and SIGN_KEY name PEM files (certificate chain and
# private key), the MSI is Authenticode-signed with osslsigncode.
# SIGN_KEY_PASSWORD unlocks an encrypted key; SIGN_TIMESTAMP_URL adds an
# RFC 3161 timestamp (needs the network; none by default).
#
# Needs: wixl, msiinfo, msibuild (Debian/Ubuntu package msitools, wixl) and,
# to sign, osslsigncode.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
wxs="$here/evident-agent.wxs"

usage() {
	echo "usage: $0 --version V --binary PATH --out FILE [--msi-version A.B.C]" >&2
	exit 2
}

die() {
	echo "build-msi.sh: $*" >&2
	exit 1
}

version= binary= out= msiversion=
while [ $# -gt 0 ]; do
	case "$1" in
	--version) [ $# -ge 2 ] || usage; version=$2; shift 2 ;;
	--binary) [ $# -ge 2 ] || usage; binary=$2; shift 2 ;;
	--out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
	--msi-version) [ $# -ge 2 ] || usage; msiversion=$2; shift 2 ;;
	-h | --help) usage ;;
	*) echo "build-msi.sh: unknown argument: $1" >&2; usage ;;
	esac
done
[ -n "$version" ] && [ -n "$binary" ] && [ -n "$out" ] || usage
[ -f "$binary" ] || die "no such binary: $binary"
for tool in wixl msiinfo msibuild; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found (install msitools and wixl)"
done

# valid_msi_version A.B.C: true when it is a Windows Installer ProductVersion.
valid_msi_version() {
	echo "$1" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+$' || return 1
	old_ifs=$IFS
	IFS=.
	# shellcheck disable=SC2086
	set -- $1
	IFS=$old_ifs
	[ "$1" -le 255 ] && [ "$2" -le 255 ] && [ "$3" -le 65535 ]
}

# msi_version V prints the ProductVersion for package version V:
#   1.2.3                 -> 1.2.3
#   V printed by installers/version.sh -> installers/version.sh --msi
#   0.0.0~git42.gabcdef   -> 0.0.42 (untagged builds: every commit upgrades)
#   1.2.3+anything, 1.2.3-rc1, 1.2.3~x -> 1.2.3
msi_version() {
	v=$1
	if valid_msi_version "$v"; then
		echo "$v"
		return
	fi
	vs="$here/../version.sh"
	if [ -x "$vs" ] && [ "$("$vs" 2>/dev/null || true)" = "$v" ]; then
		m=$("$vs" --msi)
		valid_msi_version "$m" || die "installers/version.sh --msi printed an invalid ProductVersion: $m"
		echo "$m"
		return
	fi
	case "$v" in
	0.0.0~git*)
		n=$(echo "$v" | sed -n 's/^0\.0\.0~git\([0-9][0-9]*\).*/\1/p')
		m="0.0.$n"
		;;
	*)
		m=$(echo "$v" | sed -n 's/^v\{0,1\}\([0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\).*/\1/p')
		;;
	esac
	valid_msi_version "$m" || die "cannot derive an MSI ProductVersion (a.b.c, a,b <= 255, c <= 65535) from '$v'; pass --msi-version"
	echo "$m"
}

if [ -n "$msiversion" ]; then
	valid_msi_version "$msiversion" || die "invalid --msi-version '$msiversion' (a.b.c, a,b <= 255, c <= 65535)"
else
	msiversion=$(msi_version "$version")
fi

outdir=$(cd "$(dirname "$out")" && pwd) || die "no such directory: $(dirname "$out")"
out="$outdir/$(basename "$out")"
work=$(mktemp -d)
tmp="$out.tmp.$$"
trap 'rm -rf "$work" "$tmp"' EXIT
trap 'exit 1' INT TERM

# wixl resolves File/@Source against its working directory, so the binary is
# staged under the name the package installs.
mkdir "$work/stage"
cp "$binary" "$work/stage/evident-agent.exe"
(cd "$work/stage" && wixl -a x64 -D Version="$msiversion" -D AgentExe=evident-agent.exe \
	-o "$work/evident-agent.msi" "$wxs") || die "wixl failed"
msi="$work/evident-agent.msi"

# What wixl 0.101 cannot express, patched into the tables:
# - SecureCustomProperties: wixl writes it (for MajorUpgrade) and ignores
#   Property/@Secure, so SERVER_URL and ENROLL_SECRET are appended; without
#   this, values given to msiexec do not reach the elevated install.
# - CustomAction EvidentConfigWrite: add msidbCustomActionTypeHideTarget
#   (0x2000) so the command line, which carries the enrollment secret, is not
#   written to the MSI log.
# - Upgrade: wixl 0.101 has no MajorUpgrade/@AllowSameVersionUpgrades; the
#   WIX_UPGRADE_DETECTED row gets an inclusive maximum version
#   (msidbUpgradeAttributesMigrateFeatures 0x1 | VersionMaxInclusive 0x200),
#   so a rebuild with the same ProductVersion replaces the installed one
#   instead of installing beside it. (Key columns cannot be updated in place:
#   the row is deleted and inserted again.)
# msiinfo export prints CRLF lines: the CR is dropped before awk reads them.
export_table() {
	msiinfo export "$msi" "$1" | tr -d '\r'
}
prop_value() {
	export_table Property | awk -F '\t' -v p="$1" 'NR > 3 && $1 == p { print $2 }'
}
secure=$(prop_value SecureCustomProperties)
ca_type=$(export_table CustomAction | awk -F '\t' 'NR > 3 && $1 == "EvidentConfigWrite" { print $2 }')
[ -n "$ca_type" ] || die "the MSI has no EvidentConfigWrite custom action"
ca_type=$((ca_type | 0x2000))
msibuild "$msi" \
	-q "UPDATE \`CustomAction\` SET \`Type\` = $ca_type WHERE \`Action\` = 'EvidentConfigWrite'" ||
	die "msibuild failed to update CustomAction"
if [ -z "$secure" ]; then
	msibuild "$msi" -q "INSERT INTO \`Property\` (\`Property\`, \`Value\`) VALUES ('SecureCustomProperties', 'SERVER_URL;ENROLL_SECRET')" ||
		die "msibuild failed to add SecureCustomProperties"
else
	msibuild "$msi" -q "UPDATE \`Property\` SET \`Value\` = '$secure;SERVER_URL;ENROLL_SECRET' WHERE \`Property\` = 'SecureCustomProperties'" ||
		die "msibuild failed to update SecureCustomProperties"
fi

upgrade_code=$(prop_value UpgradeCode)
[ -n "$upgrade_code" ] || die "the MSI has no UpgradeCode"
msibuild "$msi" \
	-q "DELETE FROM \`Upgrade\` WHERE \`ActionProperty\` = 'WIX_UPGRADE_DETECTED'" \
	-q "INSERT INTO \`Upgrade\` (\`UpgradeCode\`, \`VersionMax\`, \`Attributes\`, \`ActionProperty\`) VALUES ('$upgrade_code', '$msiversion', 513, 'WIX_UPGRADE_DETECTED')" ||
	die "msibuild failed to update the Upgrade table"

# The configuration must be written after the files are installed and before
# the service starts; fail the build if the sequence says otherwise.
seq_of() {
	export_table InstallExecuteSequence | awk -F '\t' -v a="$1" 'NR > 3 && $1 == a { print $3 }'
}
files=$(seq_of InstallFiles) cw=$(seq_of EvidentConfigWrite) start=$(seq_of StartServices)
[ -n "$files" ] && [ -n "$cw" ] && [ -n "$start" ] && [ "$files" -lt "$cw" ] && [ "$cw" -lt "$start" ] ||
	die "EvidentConfigWrite (sequence '$cw') must run between InstallFiles ('$files') and StartServices ('$start')"

if [ -n "${SIGN_CERT:-}" ] || [ -n "${SIGN_KEY:-}" ]; then
	[ -n "${SIGN_CERT:-}" ] && [ -n "${SIGN_KEY:-}" ] || die "set both SIGN_CERT and SIGN_KEY to sign"
	command -v osslsigncode >/dev/null 2>&1 || die "osslsigncode not found (needed because SIGN_CERT is set)"
	set -- -certs "$SIGN_CERT" -key "$SIGN_KEY" -h sha256 -n "Evident Agent"
	if [ -n "${SIGN_KEY_PASSWORD:-}" ]; then
		set -- "$@" -pass "$SIGN_KEY_PASSWORD"
	fi
	if [ -n "${SIGN_TIMESTAMP_URL:-}" ]; then
		set -- "$@" -ts "$SIGN_TIMESTAMP_URL"
	fi
	osslsigncode sign "$@" -in "$msi" -out "$work/signed.msi" >"$work/sign.log" 2>&1 || {
		cat "$work/sign.log" >&2
		die "osslsigncode sign failed"
	}
	msi="$work/signed.msi"
fi

# Replace the output atomically: copy next to it, then rename.
cp "$msi" "$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$out"
echo "$out (ProductVersion $msiversion)"
