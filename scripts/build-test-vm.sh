#!/usr/bin/env bash
# Builds the minimal Debian 12 VM image the system test (test/system/) boots: debootstrap
# (minbase) with systemd as PID 1, the kernel, iptables, iproute2 (a network namespace to
# send outbound TCP to), ansible-core and rpm (the .rpm installed, upgraded and erased with
# rpm's own database; the guest has no network, so everything the test installs or runs
# must already be there), a small initrd
# with only the virtio and ext4 modules, and a unit that runs /mnt/share/guest.sh from the
# 9p share at boot and powers off. No loop devices: mkfs.ext4 -d fills the image.
#
# Usage: scripts/build-test-vm.sh [CACHE_DIR]   (default /var/cache/mesh-harness-ci)
# Prints the image, kernel and initrd paths as shell assignments. The files are keyed by a
# hash of this script and the mirror, so an unchanged input reuses the cached image.
set -euo pipefail

cache=${1:-/var/cache/mesh-harness-ci}
suite=bookworm
packages=systemd,systemd-sysv,udev,dbus,linux-image-amd64,initramfs-tools,kmod,iptables,nftables,procps,iproute2
# Installed afterwards with apt inside the tree: debootstrap configures its --include set
# in an order that breaks python3-cryptography's postinst.
extra_packages=(ansible-core python3-apt rpm)
# The mirror apt on this host already uses (the guest never reaches it; debootstrap does).
mirror=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null | awk -v s="$suite" '$2 == s { print $1; exit }')
mirror=${mirror:-http://deb.debian.org/debian/}

key=$( { cat "$0"; echo "$mirror"; } | sha256sum | cut -c1-16)
image=$cache/vm-$key.qcow2
kernel=$cache/vm-$key.vmlinuz
initrd=$cache/vm-$key.initrd

if [[ ! -s $image || ! -s $kernel || ! -s $initrd ]]; then
  for tool in debootstrap mkfs.ext4 qemu-img; do
    command -v "$tool" >/dev/null || { echo "build-test-vm: $tool is missing (apt-get install debootstrap e2fsprogs qemu-utils)" >&2; exit 69; }
  done
  mkdir -p "$cache"
  work=$(mktemp -d "$cache/build-$key.XXXXXX")
  # debootstrap and update-initramfs mount /proc (and /sys) inside the tree: unmount them
  # before deleting, even after a failure, or rm would walk into the host's /proc.
  cleanup() {
    local m
    for m in $(awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r); do umount -l "$m" || true; done
    rm -rf --one-file-system "$work"
  }
  trap cleanup EXIT
  root=$work/root
  echo "build-test-vm: debootstrap $suite from $mirror into $root" >&2
  mkdir -p "$cache/debs"
  debootstrap --variant=minbase --cache-dir="$cache/debs" --include="$packages" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" "$root/debootstrap/debootstrap.log" >&2; exit 1; }
  mount -t proc proc "$root/proc"
  chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${extra_packages[@]}" >"$work/apt.log" 2>&1 \
    || { tail -n 30 "$work/apt.log" >&2; exit 1; }

  echo mesh-ci-vm >"$root/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 mesh-ci-vm\n' >"$root/etc/hosts"
  printf '/dev/vda / ext4 rw,noatime 0 1\nshare /mnt/share 9p trans=virtio,version=9p2000.L,msize=262144,nofail 0 0\n' >"$root/etc/fstab"
  mkdir -p "$root/mnt/share"
  chroot "$root" passwd -d root >/dev/null
  # Journald keeps logs on disk so a test can read them across the reboot.
  mkdir -p "$root/var/log/journal"

  # The small initrd: only what mounting /dev/vda as ext4 needs.
  printf 'MODULES=list\nCOMPRESS=gzip\n' >"$root/etc/initramfs-tools/conf.d/mesh-ci"
  printf 'virtio_pci\nvirtio_blk\next4\n' >>"$root/etc/initramfs-tools/modules"
  chroot "$root" update-initramfs -u -k all >"$work/initramfs.log" 2>&1 || { umount "$root/proc"; cat "$work/initramfs.log" >&2; exit 1; }
  umount "$root/proc"

  # Nothing in the guest needs timers, the network wait or a login prompt: masking them
  # is what brings TCG boots down to seconds.
  for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer \
    man-db.timer logrotate.timer systemd-tmpfiles-clean.timer e2scrub_reap.service \
    systemd-networkd-wait-online.service systemd-timesyncd.service getty@tty1.service \
    serial-getty@ttyS0.service systemd-firstboot.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
  done
  # Never fetch packages: the guest is offline.
  printf 'Acquire::Languages "none";\n' >"$root/etc/apt/apt.conf.d/99mesh-ci"
  : >"$root/etc/apt/sources.list"
  chroot "$root" apt-get clean

  cat >"$root/etc/systemd/system/mesh-ci-guest.service" <<'EOF'
[Unit]
Description=mesh-harness system test: run the script from the 9p share, then power off
RequiresMountsFor=/mnt/share
ConditionPathExists=/mnt/share/guest.sh

[Service]
Type=simple
ExecStart=/bin/sh -c 'mkdir -p /mnt/share/out; bash /mnt/share/guest.sh >>/mnt/share/out/guest.log 2>&1; echo "guest.sh exit $?" >>/mnt/share/out/guest.log; sync; systemctl poweroff'
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
EOF
  ln -sf /etc/systemd/system/mesh-ci-guest.service "$root/etc/systemd/system/multi-user.target.wants/mesh-ci-guest.service"

  cp "$root"/boot/vmlinuz-* "$work/vmlinuz"
  cp "$root"/boot/initrd.img-* "$work/initrd"
  rm -f "$root"/boot/initrd.img-*
  mkfs.ext4 -q -F -L mesh-ci-root -d "$root" "$work/root.img" 3G
  qemu-img convert -O qcow2 "$work/root.img" "$work/root.qcow2"
  mv "$work/vmlinuz" "$kernel"
  mv "$work/initrd" "$initrd"
  mv "$work/root.qcow2" "$image"
fi

printf 'VM_IMAGE=%s\nVM_KERNEL=%s\nVM_INITRD=%s\n' "$image" "$kernel" "$initrd"
