#!/usr/bin/env bash
# Builds the one agent ISO every host boots: Debian's kernel, an initramfs with the
# kernel modules the agent needs, busybox and the static metal3-agent binary as the
# ramdisk's main job, bootable on BIOS and UEFI (grub-mkrescue), serial console.
# What differs per host (network, conductor) travels in the per-host config image, in a
# second virtual-media slot or, for BMCs with one slot, in the ISO's own 64 KiB slot.
#
# Usage:
#   agent-image.sh build [OUT_DIR]     # default OUT_DIR: target/agent-image
#   agent-image.sh os [OUT_DIR]        # the test OS the lab provisions instead: OUT_DIR/os.img,
#                                      # a disk image booting BIOS and UEFI, whose init reads the
#                                      # config-2 partition, applies network_data.json's first
#                                      # IPv4 network and runs user_data when it is a script
#
# Installs its Debian packages when missing (root or sudo). Prints the ISO's size and
# the build time. Environment: KERNEL_PACKAGE (default linux-image-amd64, the generic
# kernel: USB storage, AHCI, NVMe and server NICs; the cloud kernel has none of them) and
# CARGO_TARGET_DIR (where the agent is built), AGENT_KERNEL_ARGS (more kernel parameters
# for every host, e.g. metal3.conductor=https://10.0.0.1:6386 for BMCs with one slot,
# which boot the ISO without a config image).
set -euo pipefail

cmd="${1:-}"
[ "$cmd" = "build" ] || [ "$cmd" = "os" ] || { sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
out="${2:-$repo/target/agent-image}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
start=$(date +%s.%N)
log() { echo "agent-image: $*" >&2; }

packages=(busybox-static cpio kmod grub-common grub-pc-bin grub-efi-amd64-bin xorriso mtools)
need=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ "${#need[@]}" -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    log "installing ${need[*]}"
    $SUDO apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi

if [ "$cmd" = "build" ]; then
# The agent, static (glibc's static libc; rustls, no OpenSSL).
log "building metal3-agent (static)"
(cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked \
    -p metal3-agent --bin metal3-agent --target x86_64-unknown-linux-gnu >&2)
agent="${CARGO_TARGET_DIR:-$repo/target}/x86_64-unknown-linux-gnu/release/metal3-agent"
if readelf -l "$agent" | grep -q "program interpreter"; then
    log "$agent is dynamically linked"; exit 1
fi
fi

# The kernel and its modules, from Debian.
work="$out/work"
rm -rf "$work"; mkdir -p "$work/kernel" "$work/initramfs" "$work/iso/boot/grub"
meta="${KERNEL_PACKAGE:-linux-image-amd64}"
if ! apt-cache policy "$meta" 2>/dev/null | grep -q "Candidate: [0-9]"; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q >&2
fi
pkg="$(apt-cache depends "$meta" | awk '/Depends: linux-image-/ {print $2; exit}')"
[ -n "$pkg" ] || pkg="$meta"
(cd "$work/kernel" && apt-get download "$pkg" 2>/dev/null >&2 || apt-get download "$pkg" >&2)
dpkg -x "$work"/kernel/*.deb "$work/kernel/root"
version="$(ls "$work/kernel/root/lib/modules")"
depmod -b "$work/kernel/root" "$version"
log "kernel $version"

# Modules, in load order: virtio (the lab's VMs), disks and CDs (IDE, AHCI, NVMe, SCSI,
# USB, floppy: a Floppy slot behind QEMU is one), file systems for config images, server
# NICs, VLANs and bonds.
modules=(virtio_pci virtio_net virtio_blk virtio_scsi
    ata_piix ahci sd_mod sr_mod nvme megaraid_sas mpt3sas
    xhci_pci ehci_pci uhci_hcd usb_storage uas
    isofs vfat nls_cp437 nls_iso8859_1 floppy
    e1000 e1000e igb ixgbe i40e ice bnxt_en mlx5_core tg3
    8021q bonding)
ir="$work/initramfs"
mkdir -p "$ir"/{bin,dev,proc,sys,etc,tmp,run,mnt,lib/modules/"$version"}
: > "$ir/etc/modules.load"
for m in "${modules[@]}"; do
    deps="$(modprobe -d "$work/kernel/root" -S "$version" --show-depends "$m" 2>/dev/null || true)"
    [ -n "$deps" ] || { log "module $m not in $version: left out"; continue; }
    while read -r kind path _; do
        [ "$kind" = "insmod" ] || continue
        rel="${path#"$work/kernel/root/"}"
        rel="${rel#./}"
        mkdir -p "$ir/$(dirname "$rel")"
        cp -n "$path" "$ir/$rel"
    done <<< "$deps"
    echo "$m" >> "$ir/etc/modules.load"
done
cp "$work/kernel/root/lib/modules/$version"/modules.{order,builtin,builtin.modinfo} "$ir/lib/modules/$version/"
depmod -b "$ir" "$version"

cp /bin/busybox "$ir/bin/busybox"
# What both inits start with: busybox's applets, the kernel's file systems, the modules;
# devices appear as their drivers bind, so a moment for them.
cat > "$ir/etc/init.common" <<'COMMON'
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do modprobe "$m" 2>/dev/null; done < /etc/modules.load
ip link set lo up
sleep 2
COMMON
if [ "$cmd" = "os" ]; then
cat > "$ir/init" <<'INIT'
#!/bin/busybox sh
# The lab's test OS: what a provisioned host runs to prove its config drive was read.
. /etc/init.common
say() { echo "metal3 test OS: $*" > /dev/console; }
say "booted from disk"
dev="$(findfs LABEL=config-2 2>/dev/null)"
[ -n "$dev" ] || { say "no config-2 partition"; exec sh < /dev/console > /dev/console 2>&1; }
mkdir -p /mnt/config
mount -t vfat -o ro,codepage=437,iocharset=iso8859-1 "$dev" /mnt/config || { say "cannot mount $dev"; exec sh < /dev/console > /dev/console 2>&1; }
say "config drive $dev"
latest=/mnt/config/openstack/latest
# network_data.json's first IPv4 network, by its link's MAC (sed: busybox has no JSON tool).
j="$(tr -d ' \n\t' < "$latest/network_data.json" 2>/dev/null)"
ip_address="$(echo "$j" | sed -n 's/.*"ip_address":"\([^"]*\)".*/\1/p')"
netmask="$(echo "$j" | sed -n 's/.*"netmask":"\(255[^"]*\)".*/\1/p')"
gateway="$(echo "$j" | sed -n 's/.*"gateway":"\([^"]*\)".*/\1/p')"
mac="$(echo "$j" | sed -n 's/.*"ethernet_mac_address":"\([^"]*\)".*/\1/p' | tr 'A-F' 'a-f')"
iface=""
for n in /sys/class/net/*; do
    [ "$(cat "$n/address" 2>/dev/null)" = "$mac" ] && iface="${n##*/}"
done
if [ -n "$iface" ] && [ -n "$ip_address" ]; then
    eval "$(ipcalc -p "$ip_address" "${netmask:-255.255.255.0}")"
    ip link set "$iface" up
    ip addr add "$ip_address/$PREFIX" dev "$iface"
    [ -z "$gateway" ] || ip route add default via "$gateway" dev "$iface"
    say "network $iface $ip_address/$PREFIX via ${gateway:-none}"
else
    say "no network for MAC $mac"
fi
if head -c 2 "$latest/user_data" 2>/dev/null | grep -q '#!'; then
    cp "$latest/user_data" /tmp/user_data && chmod +x /tmp/user_data
    say "running user_data"
    /tmp/user_data > /dev/console 2>&1
    say "user_data exited ($?)"
fi
say "up"
exec sh < /dev/console > /dev/console 2>&1
INIT
else
strip -o "$ir/bin/metal3-agent" "$agent"
cat > "$ir/init" <<'INIT'
#!/bin/busybox sh
. /etc/init.common
echo "metal3 agent ramdisk: starting metal3-agent" > /dev/console
/bin/metal3-agent --power-host --log info > /dev/console 2>&1
echo "metal3 agent ramdisk: metal3-agent exited ($?)" > /dev/console
exec sh < /dev/console > /dev/console 2>&1
INIT
fi
chmod +x "$ir/init"
(cd "$ir" && find . | cpio -o -H newc --quiet | gzip -9) > "$work/iso/boot/initrd.gz"
cp "$work/kernel/root/boot/vmlinuz-$version" "$work/iso/boot/vmlinuz"
kernel_args="console=tty0 console=ttyS0,115200 quiet${AGENT_KERNEL_ARGS:+ $AGENT_KERNEL_ARGS}"
case "$kernel_args" in *[\"\'\;\$\`]*) log "AGENT_KERNEL_ARGS may not hold quotes, ; \$ or \`"; exit 2;; esac
cat > "$work/iso/boot/grub/grub.cfg" <<GRUB
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
menuentry "metal3 $cmd" {
    linux /boot/vmlinuz $kernel_args
    initrd /boot/initrd.gz
}
GRUB
name=agent.iso
if [ "$cmd" = "build" ]; then
# The config-image slot (metal3-agent-protocol's ISO_SLOT_*): 64 KiB starting with the
# marker, zeros after. For a BMC with one virtual-media slot the conductor streams this ISO
# with the host's config image in the slot's place; the agent reads it from the CD.
mkdir -p "$work/iso/metal3"
{ printf 'METAL3-CONFIG-IMAGE-SLOT\n'; head -c $((65536 - 25)) /dev/zero; } > "$work/iso/metal3/config.img"
else
# A hybrid image boots from a disk as from a CD: the test OS's disk image.
name=os.img
fi
grub-mkrescue -o "$out/$name" "$work/iso" \
    --install-modules="linux normal iso9660 serial terminal search search_fs_file part_msdos part_gpt fat all_video gzio echo test" \
    --fonts="" --locales="" --themes="" >/dev/null 2>&1
end=$(date +%s.%N)
size=$(stat -c %s "$out/$name")
awk -v iso="$out/$name" -v size="$size" -v k="$(stat -c %s "$work/iso/boot/vmlinuz")" \
    -v i="$(stat -c %s "$work/iso/boot/initrd.gz")" -v t0="$start" -v t1="$end" 'BEGIN {
    printf "agent-image: %s: %d bytes (%.1f MiB; kernel %d KiB, initramfs %d KiB), built in %.0f s\n",
        iso, size, size / 1048576, k / 1024, i / 1024, t1 - t0 }'
rm -rf "$work/kernel"
