#!/bin/sh
# shoal-prepare-data-disk MODE MOUNT_POINT OWNER [EBS_VOLUME_ID]
#
# Mounts Shoal's hot tier at MOUNT_POINT. Runs at every boot (shoal-data-disk.service),
# before shoal.service, and is idempotent:
#   - a filesystem labelled shoal-data is mounted as it is (reboot, replaced instance
#     with the same EBS volume);
#   - otherwise the disks are found, striped (RAID 0) when there are several, formatted
#     XFS and mounted. Instance-store disks come back blank after a stop/start or a host
#     failure: the node then starts with an empty hot tier (docs/deploy.md says what that
#     means for data not yet in the bucket).
# MODE: instance_store (every local NVMe instance-store disk), ebs (the volume whose id
# is given) or none (MOUNT_POINT stays on the root disk).
# A disk that already carries some other filesystem is never formatted.
set -eu

mode=$1
mount_point=$2
owner=$3
volume_id=${4:-}
label=shoal-data
ebs_wait_seconds_max=300

log() { echo "shoal-prepare-data-disk: $*" >&2; }

instance_store_disks() {
  for block in /sys/block/nvme*n1; do
    [ -e "$block" ] || continue
    if grep -q "Instance Storage" "$block/device/model" 2>/dev/null; then
      echo "/dev/${block##*/}"
    fi
  done
}

# On Nitro instances an EBS volume is an NVMe disk whose serial is the volume id
# without its dash. The attachment may land after boot, so wait for it.
ebs_disk() {
  serial=$(echo "$volume_id" | tr -d -)
  waited=0
  while [ "$waited" -lt "$ebs_wait_seconds_max" ]; do
    for block in /sys/block/nvme*n1; do
      [ -e "$block" ] || continue
      if [ "$(tr -d ' ' <"$block/device/serial" 2>/dev/null)" = "$serial" ]; then
        echo "/dev/${block##*/}"
        return 0
      fi
    done
    sleep 1
    waited=$((waited + 1))
  done
  return 1
}

find_disks() {
  case "$mode" in
    instance_store) instance_store_disks ;;
    ebs) ebs_disk || log "EBS volume $volume_id did not appear in ${ebs_wait_seconds_max}s" ;;
    *) log "unknown mode '$mode' (expected instance_store, ebs or none)" ;;
  esac
}

refuse_foreign_filesystems() {
  for disk in "$@"; do
    if [ -n "$(blkid -o value -s TYPE "$disk" 2>/dev/null || true)" ]; then
      log "$disk already holds a filesystem not labelled $label; not formatting it"
      exit 1
    fi
  done
}

format_new_disks() {
  disks=$(find_disks)
  count=$(echo "$disks" | grep -c . || true)
  if [ "$count" -eq 0 ]; then
    log "no data disk found (mode $mode)"
    exit 1
  fi
  # shellcheck disable=SC2086 # one argument per disk
  refuse_foreign_filesystems $disks
  if [ "$count" -eq 1 ]; then
    device=$disks
  else
    device=/dev/md/$label
    # shellcheck disable=SC2086
    mdadm --create "$device" --run --force --level=0 --name="$label" \
      --raid-devices="$count" $disks >&2
  fi
  mkfs.xfs -f -L "$label" "$device" >&2
  udevadm settle || true
  echo "$device"
}

mkdir -p "$mount_point"
if [ "$mode" = none ] || mountpoint -q "$mount_point"; then
  exit 0
fi
if [ "$mode" = instance_store ]; then
  mdadm --assemble --scan >/dev/null 2>&1 || true
fi
udevadm settle || true
device=$(blkid -L "$label" 2>/dev/null || true)
if [ -z "$device" ]; then
  device=$(format_new_disks)
fi
mount -o noatime "$device" "$mount_point"
if id -u "$owner" >/dev/null 2>&1; then
  chown "$owner:" "$mount_point"
fi
log "mounted $device at $mount_point"
