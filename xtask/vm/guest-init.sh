#!/bin/busybox sh
# /init of the IPVS VM's initramfs (busybox ash), built by `cargo xtask vm` (xtask/src/vm.rs).
# Mounts the host's root file system (virtio-9p, read-only) under a tmpfs overlay, chroots
# into it, runs the command the host put in /vmio/cmd.sh, writes its exit status to
# /vmio/rc, powers off. Adapted from ../shared/reference/ipvs-vm/guest-init.sh.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

fail() { echo "vm-init: $*" > /dev/ttyS0; echo "VM-INIT-FAILED: $*" > /dev/ttyS0; poweroff -f; sleep 5; }

KV=$(uname -r)
echo "VM-INIT-START uptime=$(cut -d' ' -f1 /proc/uptime)" > /dev/ttyS0
while read -r m; do
    insmod "/lib/modules/$KV/$m" 2>/dev/ttyS0 || echo "vm-init: insmod $m failed" > /dev/ttyS0
done < /modules.list

T9P="trans=virtio,version=9p2000.L,msize=512000"
mount -t 9p -o "$T9P,cache=loose,ro" hostroot /mnt/lower || fail "mount hostroot"
mount -t 9p -o "$T9P,cache=none" vmio /vmio || fail "mount vmio"
. /vmio/config        # VM_KMOD (host path of unpacked /lib/modules), VM_MODULES, VM_RW_DIRS, VM_TMPFS_SIZE

mount -t tmpfs -o "size=${VM_TMPFS_SIZE:-50%}" tmpfs /mnt/rw
mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay -o lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work overlay /newroot \
    || fail "overlay mount"
N=/newroot
mount -t proc proc $N/proc
mount -t sysfs sys $N/sys
mount -t devtmpfs dev $N/dev
mkdir -p $N/dev/pts $N/dev/shm
mount -t devpts devpts $N/dev/pts
mount -t tmpfs tmpfs $N/dev/shm
# /tmp stays the host's /tmp seen through the overlay (writes land in RAM)
mount -t tmpfs tmpfs $N/run
mkdir -p $N/run/lock $N/lib/modules
# make the unpacked Debian kernel modules the guest's /lib/modules
mount --bind "$N$VM_KMOD" $N/lib/modules
mount -t tmpfs tmpfs $N/sys/fs/cgroup 2>/dev/null; mount -t cgroup2 cgroup2 $N/sys/fs/cgroup 2>/dev/null
# read-write shares of host directories (same path as on the host)
i=0
for d in $VM_RW_DIRS; do
    mkdir -p "$N$d"
    mount -t 9p -o "$T9P,cache=none" "rw$i" "$N$d" || fail "mount rw share $d"
    i=$((i+1))
done
# in-kernel module autoload (request_module) runs this helper from the initramfs root
echo /sbin/modprobe-chroot > /proc/sys/kernel/modprobe
[ -n "$VM_MODULES" ] && { chroot $N /sbin/modprobe -a $VM_MODULES 2>/dev/ttyS0 || echo "vm-init: modprobe -a $VM_MODULES failed" > /dev/ttyS0; }
echo "VM-MODULES-DONE uptime=$(cut -d' ' -f1 /proc/uptime)" > /dev/ttyS0
ip link set lo up
hostname "${VM_HOSTNAME:-ipvs-vm}"
cp /vmio/cmd.sh $N/run/vm-cmd.sh

# command stdout/stderr -> virtio-serial ports "out"/"err" (plain char devices, not
# ttys: no CR/LF mangling, page-sized buffers).  Through pipes, so isatty() is false.
port() { for d in /sys/class/virtio-ports/*; do [ "$(cat $d/name 2>/dev/null)" = "$1" ] && echo /dev/${d##*/}; done; }
OUT=$(port out); ERR=$(port err)
[ -n "$OUT" ] && [ -n "$ERR" ] || fail "virtio-serial ports out/err not found"
mkfifo /tmp/o /tmp/e
cat /tmp/o > $OUT & p1=$!
cat /tmp/e > $ERR & p2=$!
echo "VM-CMD-START uptime=$(cut -d' ' -f1 /proc/uptime)" > /dev/ttyS0
chroot $N /bin/bash /run/vm-cmd.sh < /dev/null > /tmp/o 2> /tmp/e
rc=$?
echo "VM-CMD-EXIT $rc uptime=$(cut -d' ' -f1 /proc/uptime)" > /dev/ttyS0
# processes the command left behind (servers in netns...) may hold the pipes open:
# kill everything but us and the two readers, then let the readers drain fully
for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    case $pid in 1|$p1|$p2) ;; *) kill -9 $pid 2>/dev/null ;; esac
done
wait $p1 $p2
echo "$rc" > /vmio/rc
sync
poweroff -f
