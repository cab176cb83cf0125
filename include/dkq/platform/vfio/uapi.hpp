// dkq/platform/vfio/uapi.hpp - kernel interfaces the VFIO backend uses.
//
// <linux/vfio.h> from any kernel since 4.x covers the container/group path.
// The iommufd path (Linux 6.2+) and per-device vfio cdevs (Linux 6.6+) are
// newer than the headers on many build hosts (Debian 12 ships 6.1 headers), so
// the few structures used are declared here from the kernel's stable UAPI when
// the system headers lack them. These layouts are ABI: they never change.
#pragma once

#include <linux/ioctl.h>
#include <linux/types.h>
#include <linux/vfio.h>

#include <cstdint>

namespace dkq::vfio::uapi {

// ---- iommufd (include/uapi/linux/iommufd.h) ------------------------------------
inline constexpr unsigned iommufd_type = ';';

struct iommu_ioas_alloc {
  std::uint32_t size;
  std::uint32_t flags;
  std::uint32_t out_ioas_id;
};
struct iommu_iova_range {
  std::uint64_t start;
  std::uint64_t last;  // inclusive
};
struct iommu_ioas_iova_ranges {
  std::uint32_t size;
  std::uint32_t ioas_id;
  std::uint32_t num_iovas;
  std::uint32_t reserved;
  std::uint64_t allowed_iovas;  // user pointer to iommu_iova_range[num_iovas]
  std::uint64_t out_iova_alignment;
};
struct iommu_ioas_map {
  std::uint32_t size;
  std::uint32_t flags;
  std::uint32_t ioas_id;
  std::uint32_t reserved;
  std::uint64_t user_va;
  std::uint64_t length;
  std::uint64_t iova;
};
struct iommu_ioas_unmap {
  std::uint32_t size;
  std::uint32_t ioas_id;
  std::uint64_t iova;
  std::uint64_t length;
};
inline constexpr std::uint32_t ioas_map_fixed_iova = 1u << 0;
inline constexpr std::uint32_t ioas_map_writeable = 1u << 1;
inline constexpr std::uint32_t ioas_map_readable = 1u << 2;

inline constexpr unsigned long ioctl_ioas_alloc = _IO(iommufd_type, 0x81);
inline constexpr unsigned long ioctl_ioas_iova_ranges = _IO(iommufd_type, 0x84);
inline constexpr unsigned long ioctl_ioas_map = _IO(iommufd_type, 0x85);
inline constexpr unsigned long ioctl_ioas_unmap = _IO(iommufd_type, 0x86);

// ---- vfio device cdev (include/uapi/linux/vfio.h, Linux 6.6) --------------------
struct vfio_device_bind_iommufd {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::int32_t iommufd;
  std::uint32_t out_devid;
};
struct vfio_device_attach_iommufd_pt {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::uint32_t pt_id;
};
inline constexpr unsigned long ioctl_device_bind_iommufd = _IO(VFIO_TYPE, VFIO_BASE + 18);
inline constexpr unsigned long ioctl_device_attach_iommufd_pt = _IO(VFIO_TYPE, VFIO_BASE + 19);

}  // namespace dkq::vfio::uapi
