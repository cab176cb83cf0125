#!/bin/sh
# Guest step of the NVMe interoperability check: load Linux's own nvme driver
# (modules packed by nvme_driver.py, load order from VM-NOTES.md) and give it
# controller $1, which dkq-nvme drove through vfio-pci until now.
bdf=$1
for m in crct10dif_common crct10dif_generic crc-t10dif crc64 crc64_rocksoft_generic crc64-rocksoft t10-pi nvme-core nvme; do
  insmod /lib/modules/extra/$m.ko || { echo "insmod $m failed"; exit 1; }
done
echo > /sys/bus/pci/devices/$bdf/driver_override
echo $bdf > /sys/bus/pci/drivers/vfio-pci/unbind
echo $bdf > /sys/bus/pci/drivers_probe
i=0
while [ ! -e /sys/bus/pci/devices/$bdf/driver ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
drv=$(basename "$(readlink /sys/bus/pci/devices/$bdf/driver)")
echo "$bdf now bound to $drv"
[ "$drv" = nvme ] || exit 1
i=0
while [ ! -e /dev/nvme0n2 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
ls /dev/nvme* 2>&1 | tr '\n' ' '; echo
[ -e /dev/nvme0n1 ] && [ -e /dev/nvme0n2 ]
