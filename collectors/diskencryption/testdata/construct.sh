#!/bin/sh
# construct.sh: build the CONSTRUCTED fixture trees luks-lvm/,
# luks-plus-data/ and zfs-root/. They are NOT recordings: device-mapper and
# ZFS do not work on the machine the fixtures were made on. They copy the kernel's sysfs layout
# (Documentation/ABI/testing/sysfs-block, dm uuids as cryptsetup and LVM set
# them) and mountinfo lines in proc(5) format. See README.md.
set -eu
cd "$(dirname "$0")"

# dev TREE RELPATH MAJ:MIN [removable]  creates /sys/devices/RELPATH
# and the /sys/class/block (and, for disks, /sys/block) symlinks.
dev() {
	t=$1 rel=$2 majmin=$3 rm=${4:-0}
	d="$t/sys/devices/$rel"
	k=$(basename "$rel")
	mkdir -p "$d" "$t/sys/class/block" "$t/sys/block"
	echo "$majmin" >"$d/dev"
	echo 0 >"$d/ro"
	echo 2048 >"$d/size"
	ln -sfn "../../devices/$rel" "$t/sys/class/block/$k"
	case $(basename "$(dirname "$rel")") in
	block) # a whole disk or a virtual device
		echo "$rm" >"$d/removable"
		ln -sfn "../devices/$rel" "$t/sys/block/$k"
		;;
	*) echo 1 >"$d/partition" ;;
	esac
}

# dm TREE N MAJ:MIN NAME UUID SLAVE_RELPATH...
dm() {
	t=$1 n=$2 majmin=$3 name=$4 uuid=$5
	shift 5
	dev "$t" "virtual/block/dm-$n" "$majmin"
	d="$t/sys/devices/virtual/block/dm-$n"
	mkdir -p "$d/dm" "$d/slaves"
	echo "$name" >"$d/dm/name"
	echo "$uuid" >"$d/dm/uuid"
	for s in "$@"; do
		ln -sfn "../../../../$s" "$d/slaves/$(basename "$s")"
	done
}

pseudo_mounts='22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
23 1 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
24 1 0:5 / /dev rw,nosuid,relatime shared:8 - devtmpfs udev rw,size=8000000k,nr_inodes=2000000,mode=755
25 24 0:23 / /dev/pts rw,nosuid,noexec,relatime shared:9 - devpts devpts rw,gid=5,mode=620,ptmxmode=000
26 1 0:24 / /run rw,nosuid,nodev,noexec,relatime shared:5 - tmpfs tmpfs rw,size=1600000k,mode=755
27 23 0:25 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot'

# (b) luks-lvm: NVMe disk, EFI and /boot partitions, LUKS2 on p3, LVM on top
# (root and swap logical volumes), as a default Fedora/Ubuntu encrypted install.
t=luks-lvm
rm -rf "$t"
nv=pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1
dev $t "$nv" 259:0
dev $t "$nv/nvme0n1p1" 259:1
dev $t "$nv/nvme0n1p2" 259:2
dev $t "$nv/nvme0n1p3" 259:3
dm $t 0 253:0 luks-5f1ac0de-4bd4-4c5d-9a43-1e0c0c3d5b7e CRYPT-LUKS2-5f1ac0de4bd44c5d9a431e0c0c3d5b7e-luks-5f1ac0de-4bd4-4c5d-9a43-1e0c0c3d5b7e "$nv/nvme0n1p3"
dm $t 1 253:1 vg0-root LVM-Qm1bH3uD2t4cV3Yw4v0kTq8XwU2aXvZ7pC1JmR2xJ8e3t9RkB5nF6yW0sQ4hL7oD virtual/block/dm-0
dm $t 2 253:2 vg0-swap LVM-Qm1bH3uD2t4cV3Yw4v0kTq8XwU2aXvZ7Yk3dR9eS2mN8qP1vT6wX4zA0bC5fG7hJ virtual/block/dm-0
mkdir -p $t/proc/self
cat >$t/proc/self/mountinfo <<MI
29 1 253:1 / / rw,relatime shared:1 - ext4 /dev/mapper/vg0-root rw,errors=remount-ro
$pseudo_mounts
40 29 259:2 / /boot rw,relatime shared:30 - ext4 /dev/nvme0n1p2 rw
41 40 259:1 / /boot/efi rw,relatime shared:31 - vfat /dev/nvme0n1p1 rw,fmask=0077,dmask=0077,codepage=437,iocharset=ascii,shortname=mixed,utf8,errors=remount-ro
MI
printf 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/dm-2                               partition\t8388604\t\t0\t\t-2\n' >$t/proc/swaps

# (c) luks-plus-data: LUKS2 root directly on sda2 with a swap file on it, an
# unencrypted ext4 data disk sdb and a removable USB stick sdc.
t=luks-plus-data
rm -rf "$t"
sa=pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda
sb=pci0000:00/0000:00:17.0/ata2/host1/target1:0:0/1:0:0:0/block/sdb
sc=pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host2/target2:0:0/2:0:0:0/block/sdc
dev $t "$sa" 8:0
dev $t "$sa/sda1" 8:1
dev $t "$sa/sda2" 8:2
dev $t "$sb" 8:16
dev $t "$sc" 8:32 1
dev $t "$sc/sdc1" 8:33
dm $t 0 253:0 cryptroot CRYPT-LUKS2-0e8b4c1f9d2a4e7b8c3d5f6a7b8c9d0e-cryptroot "$sa/sda2"
mkdir -p $t/proc/self
cat >$t/proc/self/mountinfo <<MI
29 1 253:0 / / rw,relatime shared:1 - ext4 /dev/mapper/cryptroot rw
$pseudo_mounts
40 29 8:1 / /boot/efi rw,relatime shared:30 - vfat /dev/sda1 rw,fmask=0077,dmask=0077
41 29 8:16 / /srv/data rw,relatime shared:31 - ext4 /dev/sdb rw
42 41 8:16 /exports /export/data rw,relatime shared:31 - ext4 /dev/sdb rw
43 29 8:33 / /media/usb rw,nosuid,nodev,relatime shared:32 - vfat /dev/sdc1 rw,uid=1000,gid=1000
MI
printf 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/swapfile                               file\t\t2097148\t\t0\t\t-2\n' >$t/proc/swaps

# (d) zfs-root: an Ubuntu-style ZFS install on one NVMe disk: EFI (p1), ext4
# /boot (p2), pool rpool on p3 (zfs_member) with the root dataset, a second
# pool tank with /srv/data and /srv/secret, and an automatic snapshot
# mounted under .zfs. ZFS datasets have anonymous 0:N devices. The
# matching `zfs get` outputs and lsblk.json are in zfs/ (constructed too).
t=zfs-root
rm -rf "$t"
nv=pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1
dev $t "$nv" 259:0
dev $t "$nv/nvme0n1p1" 259:1
dev $t "$nv/nvme0n1p2" 259:2
dev $t "$nv/nvme0n1p3" 259:3
mkdir -p $t/proc/self
cat >$t/proc/self/mountinfo <<MI
29 1 0:26 / / rw,relatime shared:1 - zfs rpool/ROOT/ubuntu rw,xattr,posixacl,casesensitive
$pseudo_mounts
40 29 259:2 / /boot rw,relatime shared:30 - ext4 /dev/nvme0n1p2 rw
41 40 259:1 / /boot/efi rw,relatime shared:31 - vfat /dev/nvme0n1p1 rw,fmask=0077,dmask=0077,codepage=437,iocharset=ascii,shortname=mixed,utf8,errors=remount-ro
42 29 0:48 / /srv/data rw,relatime shared:32 - zfs tank/data rw,xattr,noacl,casesensitive
43 29 0:49 / /srv/secret rw,relatime shared:33 - zfs tank/secret rw,xattr,noacl,casesensitive
44 29 0:50 / /.zfs/snapshot/autosnap ro,relatime shared:34 - zfs rpool/ROOT/ubuntu@autosnap ro,xattr,posixacl,casesensitive
MI
printf 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n' >$t/proc/swaps
