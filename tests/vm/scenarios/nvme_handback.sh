#!/bin/sh
# Guest step of the NVMe interoperability check: load Linux's own nvme driver
# (modules packed by nvme_driver.py, in dkqvm.NVME_MODULES' depends= order; loaded once
# per boot) and give it controller $1, which dkq-nvme drove through vfio-pci
# until now. Links /tmp/kns1 and /tmp/kns2 to the namespaces' block devices,
# whatever instance number the kernel gave the controller this time.
bdf=$1
if [ ! -e /sys/module/nvme ]; then
  for m in crct10dif_common crct10dif_generic crc-t10dif crc64 crc64_rocksoft_generic crc64-rocksoft t10-pi nvme-core nvme; do
    insmod /lib/modules/$m.ko || { echo "insmod $m failed"; exit 1; }
  done
fi
echo > /sys/bus/pci/devices/$bdf/driver_override
[ -e /sys/bus/pci/devices/$bdf/driver ] && echo $bdf > /sys/bus/pci/devices/$bdf/driver/unbind
echo $bdf > /sys/bus/pci/drivers_probe
i=0
while [ ! -e /sys/bus/pci/devices/$bdf/driver ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
drv=$(basename "$(readlink /sys/bus/pci/devices/$bdf/driver)")
echo "$bdf now bound to $drv"
[ "$drv" = nvme ] || exit 1
ctrl=""
i=0
while [ -z "$ctrl" ] && [ $i -lt 100 ]; do
  ctrl=$(ls /sys/bus/pci/devices/$bdf/nvme 2>/dev/null | head -n 1)
  [ -n "$ctrl" ] && [ -e /dev/${ctrl}n2 ] || { ctrl=""; sleep 0.1; }
  i=$((i+1))
done
[ -n "$ctrl" ] || { echo "no namespaces appeared"; exit 1; }
ln -sf /dev/${ctrl}n1 /tmp/kns1
ln -sf /dev/${ctrl}n2 /tmp/kns2
# A third namespace (the perf experiments' null-co backend) when there is one.
i=0
while [ -e /sys/bus/pci/devices/$bdf/nvme/$ctrl/${ctrl}n3 ] && [ ! -e /dev/${ctrl}n3 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
[ -e /dev/${ctrl}n3 ] && ln -sf /dev/${ctrl}n3 /tmp/kns3
echo "namespaces: $(ls /dev/${ctrl}n* | tr '\n' ' ')"
