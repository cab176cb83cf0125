#!/usr/bin/env bash
# Build libvfn's examples/perf (the NVMe IOPS benchmark of SamsungDS/libvfn) as
# a fully static x86-64 binary, for comparing dkq against it inside the VM
# test guest (an initramfs without a libc, see tests/vm/dkqvm.py).
#
#   bash tests/vm/experiments/build_libvfn.sh <libvfn-source-dir> <out-dir>
#
# Result: <out-dir>/libvfn-perf (static, x86-64); meson's build tree is
# <out-dir>/build and is wiped and reconfigured on every run.
#
# libvfn is LGPL-2.1-or-later (or MIT); its examples/ (perf.c included) are
# GPL-2.0-or-later. Nothing of libvfn is copied into dkq: this script only
# builds from the user's own checkout, and the binary stays in <out-dir>.
#
# What it does:
# - installs the Debian packages the build needs with apt-get, only those that
#   `dpkg -s` says are absent (meson, ninja-build, pkg-config, perl for
#   libvfn's trace-event generator, gcc/g++ since the project declares C and
#   C++, libnvme-dev whose <nvme/types.h> perf includes, file for the check);
# - points meson at a headers-only libnvme.pc written into <out-dir>/pkgconfig:
#   perf uses libnvme's type definitions only, and Debian's libnvme.pc lists
#   json-c and openssl as Requires.private, which a static (--static)
#   pkg-config lookup would otherwise need (libjson-c-dev, libssl-dev) and
#   which would end up on the link line for nothing;
# - configures with -Diommufd=disabled: Debian 12's kernel headers (6.1) lack
#   VFIO_DEVICE_BIND_IOMMUFD, so iommufd cannot be compiled in anyway, and
#   without this option libvfn would still try its iommufd stub whenever the
#   guest has /dev/iommu and /dev/vfio/devices (kernel >= 6.6 with
#   VFIO_DEVICE_CDEV) and get no IOMMU context (NULL, then a crash in
#   vfio_pci_open); disabled, it always uses the VFIO
#   container/group path (/dev/vfio/vfio + /dev/vfio/<group>, type1 IOMMU);
# - builds only the perf example (ninja target examples/perf, -j2), copies
#   it, fails unless it is a static x86-64 ELF, and prints the libvfn commit.
set -euo pipefail

die() { echo "build_libvfn.sh: $*" >&2; exit 1; }

[ $# -eq 2 ] || { echo "usage: bash $0 <libvfn-source-dir> <out-dir>" >&2; exit 2; }

[ -d "$1" ] || die "no such directory: $1"
src=$(cd "$1" && pwd)
if [ ! -f "$src/meson.build" ] || ! grep -q "project('libvfn'" "$src/meson.build"; then
  die "$src does not look like a libvfn checkout (no project('libvfn') in meson.build)"
fi
[ -f "$src/examples/perf.c" ] || die "$src/examples/perf.c is missing"
mkdir -p "$2"
out=$(cd "$2" && pwd)
build=$out/build

# ---- packages ---------------------------------------------------------------
pkgs=(meson ninja-build pkg-config perl gcc g++ libc6-dev linux-libc-dev libnvme-dev binutils file)
missing=()
for p in "${pkgs[@]}"; do
  # Whole output first: `dpkg -s | grep -q` can die of SIGPIPE under pipefail.
  st=$(dpkg -s "$p" 2>/dev/null || true)
  [[ $st == *$'\nStatus: install ok installed'* ]] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "missing Debian packages (install them as root): ${missing[*]}"
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
[ -f /usr/include/nvme/types.h ] || die "/usr/include/nvme/types.h missing (libnvme-dev)"

# ---- headers-only libnvme.pc ------------------------------------------------
nvme_ver=$(pkg-config --modversion libnvme 2>/dev/null || dpkg-query -W -f='${Version}' libnvme-dev | sed 's/[-+~].*//')
nvme_inc=$(pkg-config --variable=includedir libnvme 2>/dev/null || echo /usr/include)
mkdir -p "$out/pkgconfig"
cat > "$out/pkgconfig/libnvme.pc" <<EOF
# Written by dkq's tests/vm/experiments/build_libvfn.sh: libnvme's headers
# only, without its libraries (libvfn's perf example uses no libnvme function).
includedir=$nvme_inc

Name: libnvme
Description: libnvme headers only
Version: $nvme_ver
Cflags: -I\${includedir}
Libs:
EOF

# ---- configure and build ----------------------------------------------------
if [ -e "$build" ]; then
  [ -f "$build/meson-private/coredata.dat" ] || die "$build exists and is not a meson build directory"
  wipe=(--wipe)
else
  wipe=()
fi
meson setup "${wipe[@]}" "$build" "$src" \
  -Dbuildtype=release \
  -Ddefault_library=static \
  -Dprefer_static=true \
  -Dc_link_args=-static \
  -Dcpp_link_args=-static \
  -Dwerror=false \
  -Ddocs=disabled \
  -Dprofiling=false \
  -Dlibnvme=enabled \
  -Diommufd=disabled \
  -Dpkg_config_path="$out/pkgconfig"
ninja -C "$build" -j2 examples/perf

cp "$build/examples/perf" "$out/libvfn-perf"
bin=$out/libvfn-perf

# ---- static check -----------------------------------------------------------
desc=$(file -b "$bin")
echo "file: $desc"
case "$desc" in
  *"ELF 64-bit"*x86-64*"statically linked"*) ;;
  *) die "$bin is not a static x86-64 ELF executable (file: $desc); the guest initramfs has no libc or loader" ;;
esac
phdrs=$(readelf -lW "$bin")
dyn=$(readelf -dW "$bin" 2>/dev/null || true)
[[ $phdrs != *INTERP* ]] || die "$bin has a program interpreter (PT_INTERP): it is not fully static"
[[ $dyn != *"(NEEDED)"* ]] || die "$bin needs shared libraries: it is not fully static"
echo "ldd: $(ldd "$bin" 2>&1 || true)"

# ---- report -----------------------------------------------------------------
commit=unknown
if git -c safe.directory="$src" -C "$src" rev-parse --is-inside-work-tree > /dev/null 2>&1; then
  commit=$(git -c safe.directory="$src" -C "$src" describe --always --tags 2>/dev/null || echo unknown)
fi
echo "libvfn commit: $commit"
echo "built: $bin"
