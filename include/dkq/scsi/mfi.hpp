// dkq/scsi/mfi.hpp - the MegaRAID MFI firmware interface: registers, firmware
// states, frames, DCMD opcodes and status codes.
//
// MFI is the frame protocol of LSI SAS1078/2108 controllers (QEMU's `megasas`
// and `megasas-gen2`), and the 2208/3108 firmware still speaks it for
// initialisation and DCMDs. Layouts follow Linux
// drivers/scsi/megaraid/megaraid_sas.h and QEMU hw/scsi/mfi.h (the two agree;
// QEMU's use of them is in hw/scsi/megasas.c). All fields are
// little-endian. The SGL formats and frame flags are in mfi_sgl.hpp.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dkq/base/status.hpp"
#include "dkq/scsi/mfi_sgl.hpp"

namespace dkq::scsi::mfi {

// ---- registers (offsets in the memory BAR; BAR 1 on the 2108) -----------------
namespace reg {
inline constexpr std::size_t outbound_msg0 = 0x18;        // firmware status (1078)
inline constexpr std::size_t inbound_doorbell = 0x20;     // MFI_IDB
inline constexpr std::size_t outbound_intr_status = 0x30; // MFI_OSTS
inline constexpr std::size_t outbound_intr_mask = 0x34;   // MFI_OMSK
inline constexpr std::size_t inbound_queue_port = 0x40;   // MFI_IQP: post a frame
inline constexpr std::size_t outbound_doorbell_clear = 0xa0;  // MFI_ODCR0
inline constexpr std::size_t outbound_scratch_pad = 0xb0;     // firmware status (gen2)
inline constexpr std::size_t inbound_queue_port_low = 0xc0;   // MFI_IQPL
inline constexpr std::size_t inbound_queue_port_high = 0xc4;  // MFI_IQPH
inline constexpr std::size_t window_size = 0x100;  // registers a driver touches
}  // namespace reg

// Inbound doorbell bits (megaraid_sas.h MFI_INIT_*).
namespace idb {
inline constexpr std::uint32_t abort = 0x01;             // abort all pending commands
inline constexpr std::uint32_t ready = 0x02;             // move from OPERATIONAL to READY
inline constexpr std::uint32_t mfi_mode = 0x04;
inline constexpr std::uint32_t clear_handshake = 0x08;
inline constexpr std::uint32_t hotplug = 0x10;
inline constexpr std::uint32_t stop_adapter = 0x20;
inline constexpr std::uint32_t reset_flags = ready | mfi_mode | abort;
}  // namespace idb

// Firmware status word (outbound message 0 / scratch pad 0): state in bits
// 31:28, max SGEs in 23:16, max commands in 15:0.
enum class fw_state : std::uint8_t {
  undefined = 0x0,
  bb_init = 0x1,
  fw_init = 0x4,
  wait_handshake = 0x6,
  fw_init_2 = 0x7,
  device_scan = 0x8,
  boot_message_pending = 0x9,
  flush_cache = 0xa,
  ready = 0xb,
  operational = 0xc,
  fault = 0xf,
};

struct fw_status {
  fw_state state;
  std::uint32_t max_sge;
  std::uint32_t max_cmds;
  bool msix_supported;  // bit 26 (QEMU MFI_FWSTATE_MSIX_SUPPORTED)

  static constexpr fw_status decode(std::uint32_t v) noexcept {
    return {static_cast<fw_state>(v >> 28), (v >> 16) & 0xff, v & 0xffff, ((v >> 26) & 1) != 0};
  }
};

constexpr const char* fw_state_name(fw_state s) noexcept {
  switch (s) {
    case fw_state::undefined: return "UNDEFINED";
    case fw_state::bb_init: return "BB_INIT";
    case fw_state::fw_init: return "FW_INIT";
    case fw_state::wait_handshake: return "WAIT_HANDSHAKE";
    case fw_state::fw_init_2: return "FW_INIT_2";
    case fw_state::device_scan: return "DEVICE_SCAN";
    case fw_state::boot_message_pending: return "BOOT_MESSAGE_PENDING";
    case fw_state::flush_cache: return "FLUSH_CACHE";
    case fw_state::ready: return "READY";
    case fw_state::operational: return "OPERATIONAL";
    case fw_state::fault: return "FAULT";
  }
  return "unknown firmware state";
}

// Value written to the inbound queue port to post a frame (gen2 and 1078):
// frame address (32-byte aligned) | (extra frame count << 1) | 1.
inline result<std::uint32_t> queue_port_value(dev_addr frame, std::uint32_t extra_frames) noexcept {
  if ((frame.value() & 0x1f) != 0)
    return status{errc::invalid_argument, "MFI frames must be 32-byte aligned", frame.value()};
  if (frame.value() > 0xffffffffull)
    return status{errc::constraint, "frame above 4 GiB needs the IQPL/IQPH port pair", frame.value()};
  if (extra_frames > 0xf) return status{errc::invalid_argument, "frame count field holds 0..15", extra_frames};
  return static_cast<std::uint32_t>(frame.value()) | (extra_frames << 1) | 1u;
}

// ---- frames --------------------------------------------------------------------
namespace cmd {
inline constexpr std::uint8_t init = 0x00;
inline constexpr std::uint8_t ld_read = 0x01;
inline constexpr std::uint8_t ld_write = 0x02;
inline constexpr std::uint8_t ld_scsi_io = 0x03;
inline constexpr std::uint8_t pd_scsi_io = 0x04;
inline constexpr std::uint8_t dcmd = 0x05;
inline constexpr std::uint8_t abort = 0x06;
}  // namespace cmd

// The 24-byte header every frame starts with.
struct frame_header {
  std::uint8_t frame_cmd;
  std::uint8_t sense_len;
  std::uint8_t cmd_status;   // written by the firmware; 0xff while pending (polled mode)
  std::uint8_t scsi_status;
  std::uint8_t target_id;
  std::uint8_t lun_id;
  std::uint8_t cdb_len;
  std::uint8_t sge_count;
  std::uint64_t context;     // echoed into the reply queue
  std::uint16_t flags;
  std::uint16_t timeout;
  std::uint32_t data_len;    // bytes; for LD read/write: the block count
};
static_assert(sizeof(frame_header) == 24 && offsetof(frame_header, context) == 8 &&
              offsetof(frame_header, flags) == 16 && offsetof(frame_header, data_len) == 20);

inline constexpr std::uint8_t status_pending = 0xff;  // MFI_CMD_STATUS_POLL_MODE

// INIT frame and the queue information it points at.
struct init_frame {
  frame_header header;
  std::uint32_t qinfo_new_addr_lo;
  std::uint32_t qinfo_new_addr_hi;
  std::uint32_t qinfo_old_addr_lo;
  std::uint32_t qinfo_old_addr_hi;
};
static_assert(sizeof(init_frame) == 40);

struct init_queue_info {
  std::uint32_t flags;       // bit 1: 64-bit contexts
  std::uint32_t rq_entries;  // reply queue entries (the firmware's producer wraps at this)
  std::uint32_t rq_addr_lo;
  std::uint32_t rq_addr_hi;
  std::uint32_t pi_addr_lo;  // producer index, written by the firmware
  std::uint32_t pi_addr_hi;
  std::uint32_t ci_addr_lo;  // consumer index, written by the host
  std::uint32_t ci_addr_hi;
};
static_assert(sizeof(init_queue_info) == 32);
inline constexpr std::uint32_t queue_flag_context64 = 0x2;

// LD read/write frame: the SGL starts at offset 40.
struct io_frame {
  frame_header header;
  std::uint32_t sense_addr_lo;
  std::uint32_t sense_addr_hi;
  std::uint32_t start_lba_lo;
  std::uint32_t start_lba_hi;
};
static_assert(sizeof(io_frame) == 40);
inline constexpr std::size_t io_sgl_offset = 40;

// SCSI pass-through frame (LD or PD): CDB at 32, SGL at 48.
struct pass_frame {
  frame_header header;
  std::uint32_t sense_addr_lo;
  std::uint32_t sense_addr_hi;
  std::uint8_t cdb[16];
};
static_assert(sizeof(pass_frame) == 48 && offsetof(pass_frame, cdb) == 32);
inline constexpr std::size_t pass_sgl_offset = 48;

// DCMD frame: opcode at 24, 12-byte mailbox at 28, SGL at 40.
struct dcmd_frame {
  frame_header header;
  std::uint32_t opcode;
  std::uint8_t mbox[12];
};
static_assert(sizeof(dcmd_frame) == 40);
inline constexpr std::size_t dcmd_sgl_offset = 40;

// ABORT frame: the context and address of the frame to abort.
struct abort_frame {
  frame_header header;
  std::uint64_t abort_context;
  std::uint32_t abort_mfi_addr_lo;
  std::uint32_t abort_mfi_addr_hi;
};
static_assert(sizeof(abort_frame) == 40);

// DCMD opcodes (megaraid_sas.h MR_DCMD_*).
namespace dcmd {
inline constexpr std::uint32_t ctrl_get_info = 0x01010000;
inline constexpr std::uint32_t ctrl_shutdown = 0x01050000;
inline constexpr std::uint32_t ctrl_cache_flush = 0x01101000;
inline constexpr std::uint32_t pd_get_list = 0x02010000;
// The PD list filtered by a query type in mbox byte 0 (same layout as
// PD_GET_LIST); EXPOSED_TO_HOST lists the SYSTEM (JBOD) drives (Linux
// megaraid_sas_base.c, megasas_get_pd_list).
inline constexpr std::uint32_t pd_list_query = 0x02010100;
inline constexpr std::uint8_t pd_query_all = 0;
inline constexpr std::uint8_t pd_query_exposed_to_host = 5;
inline constexpr std::uint32_t ld_get_list = 0x03010000;
inline constexpr std::uint32_t ld_get_info = 0x03020000;
// mbox.b[0] of CTRL_CACHE_FLUSH: controller cache and the disks' caches.
inline constexpr std::uint8_t flush_ctrl_cache = 0x01;
inline constexpr std::uint8_t flush_disk_cache = 0x02;
}  // namespace dcmd

// Controller info (MR_DCMD_CTRL_GET_INFO data, struct mfi_ctrl_info): 2 KiB;
// it opens with the PCI identity (vendor, device, subvendor, subdevice).
namespace ctrl_info {
inline constexpr std::size_t size = 2048;
inline constexpr std::size_t pci_vendor = 0;
inline constexpr std::size_t pci_device = 2;
}  // namespace ctrl_info

// LD list (MR_DCMD_LD_GET_LIST data, QEMU struct mfi_ld_list): u32 count,
// u32 reserved, then MFI_MAX_LD entries of 16 bytes: the LD reference
// (target id, reserved, sequence number), state, 3 reserved bytes, size.
struct ld_list_entry {
  std::uint8_t target_id;
  std::uint8_t reserved;
  std::uint16_t seq_num;
  std::uint8_t state;
  std::uint8_t reserved2[3];
  std::uint64_t size;  // in sectors
};
static_assert(sizeof(ld_list_entry) == 16);
inline constexpr std::size_t ld_list_header = 8;
inline constexpr std::uint32_t max_ld = 64;  // MFI_MAX_LD on these controllers
inline constexpr std::uint8_t ld_state_optimal = 3;

// PD firmware states (MFI_PD_STATE_*). SYSTEM is a JBOD drive the firmware
// exposes to the host as is; ONLINE is a member of a logical drive.
namespace pd_state {
inline constexpr std::uint16_t unconfigured_good = 0x00;
inline constexpr std::uint16_t online = 0x18;
inline constexpr std::uint16_t system = 0x40;
}  // namespace pd_state

// ---- status codes (megaraid_sas.h MFI_STAT_*) -----------------------------------
namespace stat {
inline constexpr std::uint8_t ok = 0x00;
inline constexpr std::uint8_t invalid_cmd = 0x01;
inline constexpr std::uint8_t invalid_dcmd = 0x02;
inline constexpr std::uint8_t invalid_parameter = 0x03;
inline constexpr std::uint8_t abort_not_possible = 0x05;
inline constexpr std::uint8_t device_not_found = 0x0c;
inline constexpr std::uint8_t flush_failed = 0x15;
inline constexpr std::uint8_t ld_init_in_progress = 0x18;
inline constexpr std::uint8_t ld_lba_out_of_range = 0x19;
inline constexpr std::uint8_t memory_not_available = 0x20;
inline constexpr std::uint8_t not_found = 0x23;
inline constexpr std::uint8_t scsi_done_with_error = 0x2d;
inline constexpr std::uint8_t scsi_io_failed = 0x2e;
inline constexpr std::uint8_t scsi_reservation_conflict = 0x2f;
inline constexpr std::uint8_t shutdown_failed = 0x30;
inline constexpr std::uint8_t wrong_state = 0x32;
inline constexpr std::uint8_t ld_offline = 0x33;
inline constexpr std::uint8_t invalid_status = 0xff;
}  // namespace stat

constexpr const char* status_name(std::uint8_t s) noexcept {
  switch (s) {
    case 0x00: return "MFI_STAT_OK";
    case 0x01: return "MFI_STAT_INVALID_CMD";
    case 0x02: return "MFI_STAT_INVALID_DCMD";
    case 0x03: return "MFI_STAT_INVALID_PARAMETER";
    case 0x04: return "MFI_STAT_INVALID_SEQUENCE_NUMBER";
    case 0x05: return "MFI_STAT_ABORT_NOT_POSSIBLE";
    case 0x06: return "MFI_STAT_APP_HOST_CODE_NOT_FOUND";
    case 0x07: return "MFI_STAT_APP_IN_USE";
    case 0x08: return "MFI_STAT_APP_NOT_INITIALIZED";
    case 0x09: return "MFI_STAT_ARRAY_INDEX_INVALID";
    case 0x0a: return "MFI_STAT_ARRAY_ROW_NOT_EMPTY";
    case 0x0b: return "MFI_STAT_CONFIG_RESOURCE_CONFLICT";
    case 0x0c: return "MFI_STAT_DEVICE_NOT_FOUND";
    case 0x0d: return "MFI_STAT_DRIVE_TOO_SMALL";
    case 0x0e: return "MFI_STAT_FLASH_ALLOC_FAIL";
    case 0x0f: return "MFI_STAT_FLASH_BUSY";
    case 0x10: return "MFI_STAT_FLASH_ERROR";
    case 0x11: return "MFI_STAT_FLASH_IMAGE_BAD";
    case 0x12: return "MFI_STAT_FLASH_IMAGE_INCOMPLETE";
    case 0x13: return "MFI_STAT_FLASH_NOT_OPEN";
    case 0x14: return "MFI_STAT_FLASH_NOT_STARTED";
    case 0x15: return "MFI_STAT_FLUSH_FAILED";
    case 0x16: return "MFI_STAT_HOST_CODE_NOT_FOUNT";
    case 0x17: return "MFI_STAT_LD_CC_IN_PROGRESS";
    case 0x18: return "MFI_STAT_LD_INIT_IN_PROGRESS";
    case 0x19: return "MFI_STAT_LD_LBA_OUT_OF_RANGE";
    case 0x1a: return "MFI_STAT_LD_MAX_CONFIGURED";
    case 0x1b: return "MFI_STAT_LD_NOT_OPTIMAL";
    case 0x1c: return "MFI_STAT_LD_RBLD_IN_PROGRESS";
    case 0x1d: return "MFI_STAT_LD_RECON_IN_PROGRESS";
    case 0x1e: return "MFI_STAT_LD_WRONG_RAID_LEVEL";
    case 0x1f: return "MFI_STAT_MAX_SPARES_EXCEEDED";
    case 0x20: return "MFI_STAT_MEMORY_NOT_AVAILABLE";
    case 0x21: return "MFI_STAT_MFC_HW_ERROR";
    case 0x22: return "MFI_STAT_NO_HW_PRESENT";
    case 0x23: return "MFI_STAT_NOT_FOUND";
    case 0x24: return "MFI_STAT_NOT_IN_ENCL";
    case 0x25: return "MFI_STAT_PD_CLEAR_IN_PROGRESS";
    case 0x26: return "MFI_STAT_PD_TYPE_WRONG";
    case 0x27: return "MFI_STAT_PR_DISABLED";
    case 0x28: return "MFI_STAT_ROW_INDEX_INVALID";
    case 0x29: return "MFI_STAT_SAS_CONFIG_INVALID_ACTION";
    case 0x2a: return "MFI_STAT_SAS_CONFIG_INVALID_DATA";
    case 0x2b: return "MFI_STAT_SAS_CONFIG_INVALID_PAGE";
    case 0x2c: return "MFI_STAT_SAS_CONFIG_INVALID_TYPE";
    case 0x2d: return "MFI_STAT_SCSI_DONE_WITH_ERROR";
    case 0x2e: return "MFI_STAT_SCSI_IO_FAILED";
    case 0x2f: return "MFI_STAT_SCSI_RESERVATION_CONFLICT";
    case 0x30: return "MFI_STAT_SHUTDOWN_FAILED";
    case 0x31: return "MFI_STAT_TIME_NOT_SET";
    case 0x32: return "MFI_STAT_WRONG_STATE";
    case 0x33: return "MFI_STAT_LD_OFFLINE";
    case 0x34: return "MFI_STAT_PEER_NOTIFICATION_REJECTED";
    case 0x35: return "MFI_STAT_PEER_NOTIFICATION_FAILED";
    case 0x36: return "MFI_STAT_RESERVATION_IN_PROGRESS";
    case 0x37: return "MFI_STAT_I2C_ERRORS_DETECTED";
    case 0x38: return "MFI_STAT_PCI_ERRORS_DETECTED";
    case 0xff: return "MFI_STAT_INVALID_STATUS";
    default: return "unknown MFI status";
  }
}

// A frame's status as a dkq status. SCSI_DONE_WITH_ERROR means "look at the
// SCSI status and sense", which the caller decodes (sense.hpp); here it maps
// to device_error with the SCSI status in the detail's low byte.
constexpr status to_status(std::uint8_t cmd_status, std::uint8_t scsi_status_byte) noexcept {
  const std::uint64_t detail = (std::uint64_t{cmd_status} << 8) | scsi_status_byte;
  switch (cmd_status) {
    case stat::ok: return ok_status;
    case stat::invalid_cmd:
    case stat::invalid_dcmd:
    case stat::invalid_parameter: return {errc::invalid_argument, status_name(cmd_status), detail};
    case stat::device_not_found:
    case stat::not_found: return {errc::not_found, status_name(cmd_status), detail};
    case stat::ld_offline: return {errc::not_supported, status_name(cmd_status), detail};
    case stat::ld_lba_out_of_range: return {errc::out_of_range, status_name(cmd_status), detail};
    case stat::invalid_status: return {errc::protocol_error, "frame still marked pending (0xff)", detail};
    default: return {errc::device_error, status_name(cmd_status), detail};
  }
}

}  // namespace dkq::scsi::mfi
