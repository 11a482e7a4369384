#!/bin/sh
# record.sh OUT: copy the parts of this machine's /proc and /sys that the
# diskencryption collector reads into OUT, keeping the kernel's layout
# (/sys/class/block and /sys/block are symlinks into /sys/devices; slaves/
# entries are symlinks). Only attribute files are copied, never device data.
set -eu
out=$1
mkdir -p "$out/proc/self" "$out/sys/class/block" "$out/sys/block"
cp /proc/self/mountinfo "$out/proc/self/mountinfo"
cp /proc/swaps "$out/proc/swaps"
for l in /sys/class/block/*; do
	k=$(basename "$l")
	real=$(readlink -f "$l")
	rel=${real#/sys/}
	mkdir -p "$out/sys/$rel"
	for a in dev ro removable size partition dm/name dm/uuid loop/backing_file loop/ro; do
		if [ -r "$real/$a" ]; then
			mkdir -p "$(dirname "$out/sys/$rel/$a")"
			cat "$real/$a" >"$out/sys/$rel/$a" 2>/dev/null || true
		fi
	done
	if [ -d "$real/slaves" ]; then
		for s in "$real"/slaves/*; do
			[ -e "$s" ] || continue
			mkdir -p "$out/sys/$rel/slaves"
			ln -sfn "$(readlink "$s")" "$out/sys/$rel/slaves/$(basename "$s")"
		done
	fi
	ln -sfn "$(readlink "$l")" "$out/sys/class/block/$k"
done
for l in /sys/block/*; do
	ln -sfn "$(readlink "$l")" "$out/sys/block/$(basename "$l")"
done
