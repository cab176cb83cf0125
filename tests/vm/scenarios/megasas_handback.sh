#!/bin/sh
# Guest step of the MegaRAID interoperability check: load Linux's own
# megaraid_sas (modules packed by megasas_driver.py; sd_mod needs t10-pi,
# whose chain is the one the NVMe scenarios load) and give it controller $1, which dkq-scsi drove through
# vfio-pci until now. Then name each logical drive's block device by target:
# /dev/mrt<T> -> /dev/sdX (megaraid_sas puts LDs on channel 2: H:2:T:0).
bdf=$1
for m in crct10dif_common crct10dif_generic crc-t10dif crc64 crc64_rocksoft_generic crc64-rocksoft t10-pi \
         scsi_common scsi_mod sd_mod megaraid_sas; do
  # Loaded by an earlier hand-back in the same boot: nothing to do.
  [ -d /sys/module/$(echo $m | tr - _) ] && continue
  insmod /lib/modules/extra/$m.ko || { echo "insmod $m failed"; exit 1; }
done
echo > /sys/bus/pci/devices/$bdf/driver_override
echo $bdf > /sys/bus/pci/drivers/vfio-pci/unbind
echo $bdf > /sys/bus/pci/drivers_probe
i=0
while [ ! -e /sys/bus/pci/devices/$bdf/driver ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
drv=$(basename "$(readlink /sys/bus/pci/devices/$bdf/driver)")
echo "$bdf now bound to $drv"
[ "$drv" = megaraid_sas ] || exit 1
want=${2:-2}
i=0
while [ $i -lt 150 ]; do
  n=$(ls -d /sys/bus/pci/devices/$bdf/host*/target*/*/block/* 2>/dev/null | wc -l)
  [ "$n" -ge "$want" ] && break
  sleep 0.1; i=$((i+1))
done
rm -f /dev/mrt*
for b in /sys/bus/pci/devices/$bdf/host*/target*/*/block/*; do
  [ -e "$b" ] || continue
  hctl=$(basename "$(dirname "$(dirname "$b")")")
  dev=$(basename "$b")
  t=$(echo "$hctl" | cut -d: -f3)
  [ -e /dev/$dev ] || mknod /dev/$dev b $(cut -d: -f1 /sys/block/$dev/dev) $(cut -d: -f2 /sys/block/$dev/dev)
  ln -sf /dev/$dev /dev/mrt$t
  echo "target $t ($hctl) is /dev/$dev, $(cat /sys/block/$dev/size) sectors"
done
[ "$(ls /dev/mrt* 2>/dev/null | wc -l)" -ge "$want" ]
