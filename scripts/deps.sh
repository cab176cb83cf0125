#!/usr/bin/env bash
# Installs everything dkq's build, tests, VM tests and benchmarks need, from
# Debian 12's archive only. Run as root (or with sudo). Idempotent.
set -euo pipefail
pkgs=(
  # build and unit tests
  cmake ninja-build g++ clang libc++-dev libc++abi-dev libclang-rt-14-dev
  libgtest-dev libgmock-dev libbenchmark-dev libnuma-dev python3
  # aarch64 cross build of the core, run under user-mode emulation
  g++-aarch64-linux-gnu qemu-user binutils-aarch64-linux-gnu
  # VM tests: QEMU with its emulated NVMe and MegaRAID models, a busybox guest
  qemu-system-x86 qemu-system-data busybox-static cpio
  # zstd unpacks the 6.12 guest kernel's ELF image (its bzImage payload is zstd);
  # Debian programs the ublk scenarios run in the guest (host_program()), and
  # liburing for the ublk server
  zstd fio e2fsprogs util-linux liburing-dev
  # benchmark peers and report
  libdpdk-dev libboost-dev libreaderwriterqueue-dev libconcurrentqueue-dev
  libatomic-queue-dev libtbb-dev pkg-config python3-matplotlib
  # docs
  doxygen
  # tools used by tests and benchmarks
  valgrind
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
