// examples/scsi/driverkit/task_translation.hpp - every decision the MegaRAID
// SCSI dext makes, without a DriverKit header, so it is compiled and
// unit-tested on Linux (tests/scsi_dext/) against the software MFI controller.
//
// The dext (DkqMegaRAID.cpp) copies Apple's SCSIUserParallelTask into a
// task_view, hands it to task_engine, and copies the response_view it gets
// back into a SCSIUserParallelResponse for ParallelTaskCompletion. Between
// those two copies everything happens here:
//
//   task_table          unique controller task IDs for UserMapHBAData: fixed
//                       slots, generation in the high bits, never handed out
//                       twice, looked up with the generation checked
//   to_request()        a task -> megaraid::request (validation; the data
//                       region is the UserGetDataBuffer mapping + fBufferIOVMAddr)
//   plan_data_sgl()     how the one fBufferIOVMAddr segment becomes MFI SGEs
//                       under the HBA's limits (or bounce chunks below 4 GiB)
//   hba_constraints     the seven UserReportHBAConstraints values and the
//                       UserGetDMASpecification answer, from controller_info
//   build_response()    core completion -> SCSI status, service response,
//                       sense (auto-sense), bytes transferred
//   task_engine         the asynchronous path: submit, drain, SYNCHRONIZE
//                       CACHE (16) -> (10) fallback without blocking, timer
//                       scan, orderly shutdown (SYNCHRONIZE CACHE to every
//                       LD, cache flush DCMD, controller stop)
//   target_plan         the LD list -> targets created one at a time
//
// Facts: Apple's SCSIControllerDriverKit documentation and
// IOUserSCSIParallelInterfaceController.iig (docs/scsi-dext.md); the MFI core is
// examples/scsi/driver/megaraid.hpp, used unchanged.
//
// Same rules as the core: C++20, no exceptions, no RTTI, no allocation after
// setup, errors as values. Not thread-safe: the dext calls every member of
// task_engine under one IOLock (UserProcessParallelTask on the Default queue,
// InterruptOccurred on InterruptQueue, the timer), exactly like the core.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>

#include "dkq/base/bits.hpp"
#include "dkq/base/status.hpp"
#include "dkq/dma/constraints.hpp"
#include "dkq/dma/region.hpp"
#include "dkq/scsi/cdb.hpp"
#include "dkq/scsi/mfi.hpp"
#include "dkq/scsi/mfi_sgl.hpp"
#include "dkq/scsi/sense.hpp"
#include "examples/scsi/driver/megaraid.hpp"

namespace dkq::examples::megaraid::dext {

// ---- mirrors of what the dext receives and returns --------------------------------

// SCSIUserParallelTask.fTransferDirection (kSCSIDataTransfer_NoDataTransfer,
// _FromInitiatorToTarget = write, _FromTargetToInitiator = read); the glue
// maps Apple's constants by name.
enum class transfer_dir : std::uint8_t { none, to_target, from_target };

// The fields of SCSIUserParallelTask the dext uses (IOUserSCSIParallelInterfaceController.iig).
struct task_view {
  std::uint64_t version = 0;              // kScsiUserParallelTaskCurrentVersion1
  std::uint64_t target_id = 0;            // fTargetID
  std::uint8_t lun[8] = {};               // fLogicalUnitBytes (SAM LUN; single level in byte 1)
  std::uint8_t cdb[16] = {};              // fCommandDescriptorBlock
  std::uint8_t cdb_length = 0;            // fCommandSize
  transfer_dir dir = transfer_dir::none;  // fTransferDirection
  std::uint64_t requested_count = 0;      // fRequestedTransferCount
  std::uint64_t buffer_iovm_addr = 0;     // fBufferIOVMAddr: a device address (DART), one segment
  std::uint32_t timeout_ms = 0;           // fTimeoutInMilliSec
  std::uint64_t controller_task_id = 0;   // fControllerTaskIdentifier (from UserMapHBAData)
  std::uint64_t task_tag = 0;             // fTaskTagIdentifier (ABORT TASK names the task by it)
};

// The CPU side of the task's data buffer: UserGetDataBuffer's descriptor,
// mapped by the glue (only legal inside UserProcessParallelTask; the glue keeps
// the mapping until the task completes, because the core copies bounced reads
// into it at completion). Only a task the core must bounce needs it
// (task_engine::needs_data_buffer): UserGetDataBuffer is costly, and once it
// has been called the task's fBufferIOVMAddr mapping may no longer be used
// (IOUserSCSIParallelInterfaceController.iig, UserGetDataBuffer). Every other
// task leaves it empty and the device reaches the data through fBufferIOVMAddr.
struct data_buffer {
  void* cpu = nullptr;
  std::uint64_t length = 0;
};

// The CPU address given to the core for data it reaches only through the
// device address (data_buffer empty). The core dereferences data.cpu only when
// it bounces, and a bounced task without a data_buffer is refused before it
// reaches the core (task_engine::process), so this address is never read.
inline std::byte* device_only_data() noexcept {
  static std::byte marker;
  return &marker;
}

// SCSIUserParallelResponse.fServiceResponse.
enum class service_response : std::uint8_t { task_complete, service_delivery_or_target_failure };

// Why a task failed below the SCSI level (mapped to Apple's SCSITaskStatus
// DeliveryFailure / DeviceNotPresent / TaskTimeoutOccurred by the glue).
enum class host_failure : std::uint8_t { none, delivery_failure, device_not_present, timeout };

inline constexpr std::size_t max_sense_bytes = 256;  // kMaxSenseBufferSize (fSenseBuffer[256])
// fSenseLength is a uint8_t: 255 of fSenseBuffer's 256 bytes is the most a
// response can report (a longer sense is cut there, never wrapped to 0).
inline constexpr std::size_t max_sense_length = 255;

// The fields of SCSIUserParallelResponse the dext fills.
struct response_view {
  std::uint64_t controller_task_id = 0;
  std::uint64_t target_id = 0;
  std::uint8_t scsi_status = scsi::scsi_status::good;  // fCompletionStatus when failure == none
  host_failure failure = host_failure::none;
  service_response service = service_response::task_complete;
  std::uint64_t bytes_transferred = 0;
  std::uint8_t sense[max_sense_bytes] = {};
  std::uint8_t sense_length = 0;  // fSenseLength: valid bytes in sense (auto-sense)
  status why{};                   // for the log: what the core or the checks said
};

// ---- HBA constraints and DMA specification -------------------------------------------

// MFI data SGEs have no documented alignment; a dword is what the surveyed
// dexts report (Apple, UserReportHBAConstraints) and lets the kernel bounce pathological buffers
// before they reach us.
inline constexpr std::uint64_t data_alignment = 4;
// The MFI element length field is 32 bits.
inline constexpr std::uint64_t mfi_max_element_bytes = 0xFFFFFFFFull;

// The seven required keys of UserReportHBAConstraints (Apple doc), as numbers.
struct hba_constraints {
  std::uint64_t max_segment_count_read = 0;      // kIOMaximumSegmentCountReadKey
  std::uint64_t max_segment_count_write = 0;     // kIOMaximumSegmentCountWriteKey
  std::uint64_t max_segment_bytes_read = 0;      // kIOMaximumSegmentByteCountReadKey
  std::uint64_t max_segment_bytes_write = 0;     // kIOMaximumSegmentByteCountWriteKey
  std::uint64_t min_segment_alignment = 0;       // kIOMinimumSegmentAlignmentByteCountKey
  std::uint64_t address_bits = 0;                // kIOMaximumSegmentAddressableBitCountKey
  std::uint64_t hba_data_alignment_mask = 0;     // kIOMinimumHBADataAlignmentMaskKey

  // The same limits as a dkq splitter constraint set (per direction they are equal).
  dma_constraints as_dma_constraints(std::uint64_t max_transfer) const noexcept {
    dma_constraints c;
    c.max_segments = static_cast<std::uint32_t>(max_segment_count_write);
    c.max_segment_bytes = max_segment_bytes_write;
    c.alignment = min_segment_alignment;
    c.addressable_bits = static_cast<unsigned>(address_bits);
    c.max_transfer = max_transfer;
    return c;
  }
};

// UserGetDMASpecification's out-parameters. Segments are 64-bit little-endian
// in both modes (the 32-bit limit is the address bits, not the segment
// format; mrmidi/ASFireWire saw Big32 break the first data command).
enum class dma_segment_type : std::uint8_t { little64 };
struct dma_specification {
  std::uint64_t max_transfer = 0;   // maxTransferSize
  std::uint32_t alignment = 0;      // alignment (bytes)
  std::uint8_t address_bits = 0;    // numAddressBits
  dma_segment_type segment_type = dma_segment_type::little64;
};

// From the started core's limits: SGEs per command (max_sge, already the
// tighter of status word, CTRL_GET_INFO and frame room), bytes per command
// (max_transfer, clamped for bounce capacity in forced 32-bit mode) and the
// SGL format (SGL32 means every device address must stay below 4 GiB).
inline result<hba_constraints> compute_constraints(const controller_info& info) noexcept {
  if (info.max_sge == 0 || info.max_transfer == 0)
    return status{errc::not_initialized, "controller limits unknown (start the core before reporting constraints)"};
  hba_constraints h;
  h.max_segment_count_read = h.max_segment_count_write = info.max_sge;
  // One element can hold the whole transfer (32-bit length field), so the
  // per-segment limit is the transfer limit: the kernel's one long segment
  // never needs cutting for length.
  const std::uint64_t per = info.max_transfer < mfi_max_element_bytes ? info.max_transfer : mfi_max_element_bytes;
  h.max_segment_bytes_read = h.max_segment_bytes_write = per;
  h.min_segment_alignment = data_alignment;
  h.address_bits = info.sgl == scsi::mfi_sgl_format::sgl32 ? 32 : 64;
  h.hba_data_alignment_mask = ~(data_alignment - 1);
  return h;
}

inline result<dma_specification> dma_spec_for(const controller_info& info) noexcept {
  auto h = compute_constraints(info);
  if (!h) return h.error();
  dma_specification d;
  d.max_transfer = info.max_transfer;
  d.alignment = static_cast<std::uint32_t>(h->min_segment_alignment);
  d.address_bits = static_cast<std::uint8_t>(h->address_bits);
  return d;
}

// The core asks its platform for DMA memory below an exclusive `limit`
// (no_address_limit = none); DriverKit's IODMACommandSpecification takes
// maxAddressBits. The largest bit count whose whole range lies below limit.
constexpr unsigned address_bits_for_limit(std::uint64_t limit) noexcept {
  if (limit == no_address_limit) return 64;
  if (limit < 2) return 1;  // nothing useful fits; the allocation will fail cleanly
  return log2_floor(limit);
}

// ---- task -> request ------------------------------------------------------------------

struct translate_limits {
  std::uint64_t task_version = 1;   // kScsiUserParallelTaskCurrentVersion1 (the glue passes the SDK's)
  std::uint64_t max_transfer = 0;   // controller_info::max_transfer
};

// Single-level LUN 0 (SAM-5 4.7: peripheral addressing, bus 0, LUN in byte 1).
// MegaRAID logical drives have exactly one LUN.
constexpr bool is_lun0(const std::uint8_t (&lun)[8]) noexcept {
  for (std::uint8_t b : lun)
    if (b != 0) return false;
  return true;
}

// SCSI family target IDs: logical drives keep their MFI target (0..63);
// physical drives the controller exposes as SYSTEM (JBOD) drives follow at
// pd_target_base + their PD frame target, so one controller can offer both.
inline constexpr std::uint64_t pd_target_base = mfi::max_ld;
inline constexpr std::uint32_t max_targets = mfi::max_ld + 256;
inline bool is_pd_target(std::uint64_t target_id) noexcept {
  return target_id >= pd_target_base && target_id < max_targets;
}

// Builds the core request for one task. Errors (never a partly built request):
//   invalid_argument  version, CDB length, direction/count mismatch, buffer missing
//                     or shorter than the count, IOVM address 0
//   out_of_range      target above the LD and PD ranges (0..63, 64..319)
//   not_supported     a LUN other than 0 (answered CHECK CONDITION, LOGICAL UNIT
//                     NOT SUPPORTED, by reject_response)
//   constraint        transfer longer than the controller's maximum
inline result<request> to_request(const task_view& t, const data_buffer& buf, const translate_limits& lim) noexcept {
  if (t.version != lim.task_version)
    return status{errc::invalid_argument, "SCSIUserParallelTask version not supported", t.version};
  if (t.cdb_length == 0 || t.cdb_length > 16)
    return status{errc::invalid_argument, "CDB length must be 1..16", t.cdb_length};
  if (t.target_id >= max_targets)
    return status{errc::out_of_range, "targets are 0..63 (logical) and 64..319 (physical)", t.target_id};
  if (!is_lun0(t.lun)) return status{errc::not_supported, "targets have LUN 0 only", t.lun[1]};
  if (t.requested_count > lim.max_transfer)
    return status{errc::constraint, "transfer longer than the controller's maximum", t.requested_count};
  if (t.dir == transfer_dir::none && t.requested_count != 0)
    return status{errc::invalid_argument, "task without a data direction asks for data", t.requested_count};
  request r;
  // The CDB goes to the LD, or in a PD SCSI IO frame to the physical drive,
  // unchanged (FUA, DPO, group bits survive).
  r.kind = is_pd_target(t.target_id) ? op::pd_scsi : op::ld_scsi;
  r.target = static_cast<std::uint8_t>(is_pd_target(t.target_id) ? t.target_id - pd_target_base : t.target_id);
  r.lun = 0;
  std::memcpy(r.cdb.data(), t.cdb, t.cdb_length);
  r.cdb_len = t.cdb_length;
  r.dir = t.dir == transfer_dir::to_target ? dma_direction::to_device : dma_direction::from_device;
  r.timeout_ms = t.timeout_ms;  // the core's per-command deadline (0: its default)
  if (t.requested_count != 0) {
    if (buf.cpu != nullptr && buf.length < t.requested_count)
      return status{errc::invalid_argument, "data buffer shorter than the requested count", buf.length};
    if (t.buffer_iovm_addr == 0) return status{errc::invalid_argument, "data task without fBufferIOVMAddr"};
    // The device address is the kernel's IOVM segment, never the CPU mapping
    // (docs/porting-a-kext.md, "DMA reads back zeros"); the CPU pointer is only
    // for the core's bounce copies, and absent unless the task is bounced.
    void* cpu = buf.cpu != nullptr ? buf.cpu : static_cast<void*>(device_only_data());
    r.data = dma_region{cpu, dev_addr{t.buffer_iovm_addr}, static_cast<std::size_t>(t.requested_count)};
  }
  return r;
}

// ---- the data SGL: one kernel segment under the HBA's limits -----------------------------

struct sgl_plan {
  std::uint32_t elements = 0;      // SGEs the frame will carry
  bool bounced = false;            // data copied through bounce chunks below 4 GiB
  std::uint64_t element_bytes = 0; // longest element
};

// What the core's build() will emit for `r`: the one long fBufferIOVMAddr
// segment split by dkq's splitter under the controller's element limit (32-bit
// length), SGE count and addressing. In SGL32 mode a segment reaching above
// 4 GiB cannot be described at all and goes through the core's bounce chunks
// (at most 32 per command, bounce_chunk bytes each). The core takes one data
// region and emits one element for it, so a split needing more than one
// element without bouncing is refused here, before anything is posted.
inline result<sgl_plan> plan_data_sgl(const request& r, const controller_info& info, std::uint32_t bounce_chunk) noexcept {
  sgl_plan p;
  if (r.data.size == 0) return p;
  if (r.data.size > info.max_transfer)
    return status{errc::constraint, "transfer longer than the controller's maximum", r.data.size};
  const bool sgl32 = info.sgl == scsi::mfi_sgl_format::sgl32;
  const std::uint64_t last = r.data.device.value() + (r.data.size - 1);
  if (sgl32 && last > 0xFFFFFFFFull) {
    if (bounce_chunk == 0) return status{errc::constraint, "32-bit SGL, data above 4 GiB and no bounce chunks"};
    const std::uint64_t n = (r.data.size + bounce_chunk - 1) / bounce_chunk;
    const std::uint64_t cap = info.max_sge < 32 ? info.max_sge : 32;  // the core's per-command bounce slots
    if (n > cap) return status{errc::constraint, "transfer needs more bounce chunks than one command may hold", n};
    p.elements = static_cast<std::uint32_t>(n);
    p.bounced = true;
    p.element_bytes = r.data.size < bounce_chunk ? r.data.size : bounce_chunk;
    return p;
  }
  dma_constraints c;
  c.max_segment_bytes = mfi_max_element_bytes;
  c.max_segments = info.max_sge;
  c.addressable_bits = sgl32 ? 32 : 64;
  c.max_transfer = info.max_transfer;
  const dma_segment in{r.data.device, r.data.size};
  dma_segment out[4];
  auto s = split_segments(c, {&in, 1}, out);
  if (!s) return s.error();
  if (s->count != 1)
    return status{errc::constraint, "segment needs several MFI elements; the core takes one per region", s->count};
  p.elements = 1;
  p.element_bytes = out[0].len;
  return p;
}

// ---- SYNCHRONIZE CACHE -------------------------------------------------------------------

constexpr bool is_synchronize_cache(std::uint8_t opcode) noexcept {
  return opcode == scsi::op::synchronize_cache_10 || opcode == scsi::op::synchronize_cache_16;
}

// The (16) form rewritten as (10) (SBC-3 5.22/5.23): IMMED (byte 1 bit 1) and
// the group number carry over; LBA and block count when they fit 32/16 bits,
// otherwise LBA 0 / 0 blocks = the whole medium, a superset of what was asked
// (flushing more is safe; flushing less would lose data).
inline void sync16_to_sync10(const std::uint8_t* cdb16, scsi::cdb_bytes& out, bool& widened) noexcept {
  const std::uint64_t lba = scsi::get_be64(cdb16 + 2);
  const std::uint32_t blocks = scsi::get_be32(cdb16 + 10);
  widened = lba > 0xFFFFFFFFull || blocks > 0xFFFFu || (blocks != 0 && lba + blocks - 1 > 0xFFFFFFFFull);
  out = {};
  out[0] = scsi::op::synchronize_cache_10;
  out[1] = static_cast<std::uint8_t>(cdb16[1] & 0x02);  // IMMED
  if (!widened) {
    scsi::detail::put_be32(&out[2], static_cast<std::uint32_t>(lba));
    scsi::detail::put_be16(&out[7], static_cast<std::uint16_t>(blocks));
  }
  out[6] = static_cast<std::uint8_t>(cdb16[14] & 0x3f);  // group number
}

// The device refused the opcode (ILLEGAL REQUEST, INVALID COMMAND OPERATION
// CODE): QEMU's scsi-disk (hw/scsi/scsi-disk.c) answers SYNCHRONIZE CACHE (16) so.
inline bool is_invalid_opcode(const completion& c) noexcept {
  return c.mfi_status == mfi::stat::scsi_done_with_error && c.scsi_status == scsi::scsi_status::check_condition &&
         c.sense_valid && c.sense.key == scsi::sense_key::illegal_request && c.sense.asc == 0x20;
}

// ---- completion -> response ----------------------------------------------------------------

// Fixed-format sense (SPC-4 4.5.3) from the decoded sense the core reports:
// response code 70h/71h, VALID + INFORMATION when it fits 32 bits, key, ASC,
// ASCQ. 18 bytes. (The core keeps the device's raw sense bytes to itself, so
// descriptor-format details beyond these fields do not reach the OS.)
inline std::uint8_t build_fixed_sense(const scsi::sense_data& s, std::uint8_t* out, std::size_t cap) noexcept {
  constexpr std::uint8_t len = 18;
  if (cap < len) return 0;
  std::memset(out, 0, len);
  out[0] = s.deferred ? 0x71 : 0x70;
  if (s.information_valid && s.information <= 0xFFFFFFFFull) {
    out[0] = static_cast<std::uint8_t>(out[0] | 0x80);
    scsi::detail::put_be32(&out[3], static_cast<std::uint32_t>(s.information));
  }
  out[2] = static_cast<std::uint8_t>(s.key & 0x0f);
  out[7] = len - 8;
  out[12] = s.asc;
  out[13] = s.ascq;
  return len;
}

inline response_view failure_response(const task_view& t, host_failure f, status why) noexcept {
  response_view r;
  r.controller_task_id = t.controller_task_id;
  r.target_id = t.target_id;
  r.failure = f;
  r.service = service_response::service_delivery_or_target_failure;
  r.bytes_transferred = 0;
  r.why = why;
  return r;
}

inline response_view check_condition_response(const task_view& t, std::uint8_t key, std::uint8_t asc,
                                              std::uint8_t ascq, status why) noexcept {
  response_view r;
  r.controller_task_id = t.controller_task_id;
  r.target_id = t.target_id;
  r.scsi_status = scsi::scsi_status::check_condition;
  scsi::sense_data s;
  s.key = key;
  s.asc = asc;
  s.ascq = ascq;
  r.sense_length = build_fixed_sense(s, r.sense, sizeof r.sense);
  r.why = why;
  return r;
}

// A task refused before it reached the controller. A LUN other than 0 is a
// SCSI answer (ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED, asc 25h) so LUN
// scans end normally; queue full is TASK SET FULL (the OS retries); anything
// else is a broken request: service delivery failure.
inline response_view reject_response(const task_view& t, const status& why) noexcept {
  if (why.code() == errc::not_supported)
    return check_condition_response(t, scsi::sense_key::illegal_request, 0x25, 0x00, why);
  if (why.code() == errc::no_space) {
    response_view r;
    r.controller_task_id = t.controller_task_id;
    r.target_id = t.target_id;
    r.scsi_status = scsi::scsi_status::task_set_full;
    r.why = why;
    return r;
  }
  if (why.code() == errc::not_initialized || why.code() == errc::removed || why.code() == errc::not_found)
    return failure_response(t, host_failure::device_not_present, why);
  return failure_response(t, host_failure::delivery_failure, why);
}

// SAM-5 5.3 status codes that report a failure by themselves; GOOD, CONDITION
// MET and the obsolete/reserved codes do not.
constexpr bool reports_failure(std::uint8_t scsi_status) noexcept {
  switch (scsi_status) {
    case scsi::scsi_status::check_condition:
    case scsi::scsi_status::busy:
    case scsi::scsi_status::reservation_conflict:
    case scsi::scsi_status::task_set_full:
    case scsi::scsi_status::aca_active:
    case scsi::scsi_status::task_aborted: return true;
    default: return false;
  }
}

// A core completion as the OS wants it:
//  - MFI OK: GOOD, the requested count transferred;
//  - SCSI done with error: the target's status byte as is (CHECK CONDITION with
//    auto-sense when the frame carried sense, BUSY, TASK SET FULL, ...); data
//    counts as transferred only when the core calls the completion good
//    (RECOVERED ERROR / NO SENSE); a status byte that does not report a
//    failure (GOOD, CONDITION MET, reserved) on a failed command is a target
//    failure, never passed on;
//  - RESERVATION CONFLICT frame status: that SCSI status;
//  - controller out of resources: BUSY (the OS retries);
//  - device or LD not found / offline: device not present;
//  - no answer (timeout, reset): timeout or delivery failure;
//  - every other MFI status: service delivery or target failure.
// The core reports no residual, so a failed task moved 0 bytes.
inline response_view build_response(const task_view& t, const completion& c) noexcept {
  response_view r;
  r.controller_task_id = t.controller_task_id;
  r.target_id = t.target_id;
  r.why = c.st;
  if (c.stopped) {
    // The controller was stopped with the task in flight: it will never
    // answer it now.
    return failure_response(t, host_failure::device_not_present, c.st);
  }
  if (c.aborted) {
    // Ended by ABORT TASK (abort_task): TASK ABORTED, nothing transferred.
    r.scsi_status = scsi::scsi_status::task_aborted;
    return r;
  }
  switch (c.mfi_status) {
    case mfi::stat::ok:
      r.scsi_status = scsi::scsi_status::good;
      r.bytes_transferred = t.requested_count;
      return r;
    case mfi::stat::scsi_done_with_error:
      if (!c.st.ok() && !reports_failure(c.scsi_status)) {
        // "Failed, see the SCSI status" and the status says success (GOOD,
        // CONDITION MET) or nothing known: the device contradicts itself.
        // The core's verdict stands - passing GOOD on would acknowledge a
        // command that failed (for SYNCHRONIZE CACHE, a flush that did not
        // happen).
        return failure_response(t, host_failure::delivery_failure, c.st);
      }
      r.scsi_status = c.scsi_status;
      if (c.scsi_status == scsi::scsi_status::check_condition && c.sense_valid) {
        if (c.sense_bytes != nullptr && c.sense_bytes_len != 0) {
          // The device's own bytes, whole (descriptor format, sense-key
          // specific bytes, FRU code survive), up to fSenseBuffer's size.
          std::size_t n = c.sense_bytes_len;
          if (n > sizeof r.sense) n = sizeof r.sense;
          std::memcpy(r.sense, c.sense_bytes, n);
          r.sense_length = static_cast<std::uint8_t>(n);
        } else {
          r.sense_length = build_fixed_sense(c.sense, r.sense, sizeof r.sense);
        }
      }
      r.bytes_transferred = c.st.ok() ? t.requested_count : 0;
      return r;
    case mfi::stat::scsi_reservation_conflict:
      r.scsi_status = scsi::scsi_status::reservation_conflict;
      return r;
    case mfi::stat::memory_not_available:
      r.scsi_status = scsi::scsi_status::busy;
      return r;
    case mfi::stat::device_not_found:
    case mfi::stat::not_found:
    case mfi::stat::ld_offline:
      return failure_response(t, host_failure::device_not_present, c.st);
    case mfi::stat::invalid_status:
      return failure_response(t, c.st.code() == errc::timeout ? host_failure::timeout : host_failure::delivery_failure,
                              c.st);
    default: return failure_response(t, host_failure::delivery_failure, c.st);
  }
}

// ---- unique controller task IDs -------------------------------------------------------------

struct task_table_counters {
  std::uint64_t mapped = 0;       // IDs handed out
  std::uint64_t unmapped = 0;
  std::uint64_t started = 0;      // begin() accepted
  std::uint64_t finished = 0;     // finish() accepted
  std::uint64_t stale = 0;        // an ID of an older generation or of a free slot
  std::uint64_t duplicate = 0;    // a second finish for the same use
  std::uint64_t reused_in_flight = 0;  // begin() on an ID already in flight
  std::uint64_t out_of_range = 0;
};

// UserMapHBAData must return an ID that names one kernel SCSIParallelTask for
// its whole life; reused IDs were diagnosed by Apple DTS as the cause of
// zeroed write buffers (the iSCSIKit dext, joaquinbejar/iSCSIKit). A 32-bit ID is index | generation <<
// index_bits: the slot is fixed, the generation is bumped on every map, so an
// ID is never handed out twice (until 2^(32 - index_bits) maps of one slot)
// and never 0. Per use: begin() (UserProcessParallelTask) moves a mapped slot
// in flight, finish() (completion) back; everything else is an error value.
template <class Payload>
class task_table {
 public:
  enum class slot_state : std::uint8_t { free, mapped, in_flight };

  task_table() noexcept = default;
  task_table(const task_table&) = delete;
  task_table& operator=(const task_table&) = delete;
  ~task_table() { delete[] slots_; }

  // Once, at setup: `capacity` slots (1 .. 2^20).
  status init(std::uint32_t capacity) noexcept {
    if (capacity == 0 || capacity > (1u << 20)) return {errc::invalid_argument, "task table size must be 1..2^20", capacity};
    delete[] slots_;
    slots_ = new (std::nothrow) slot[capacity];
    if (slots_ == nullptr) return {errc::no_memory, "task table"};
    cap_ = capacity;
    index_bits_ = capacity <= 2 ? 1u : log2_floor(round_up_pow2(capacity));
    gen_mask_ = (1u << (32 - index_bits_)) - 1;
    mapped_ = in_flight_ = 0;
    c_ = {};
    return ok_status;
  }

  std::uint32_t capacity() const noexcept { return cap_; }
  std::uint32_t mapped() const noexcept { return mapped_; }
  std::uint32_t in_flight() const noexcept { return in_flight_; }
  const task_table_counters& counters() const noexcept { return c_; }

  // UserMapHBAData: a fresh ID, or no_space when every slot names a live task.
  result<std::uint32_t> map() noexcept {
    for (std::uint32_t i = 0; i < cap_; ++i) {
      const std::uint32_t idx = (next_ + i) % cap_;
      slot& s = slots_[idx];
      if (s.state != slot_state::free) continue;
      s.gen = (s.gen + 1) & gen_mask_;
      if (s.gen == 0) s.gen = 1;  // ID 0 is never valid (an unset field reads 0)
      s.state = slot_state::mapped;
      s.payload = Payload{};
      next_ = (idx + 1) % cap_;  // round-robin: a just-freed slot is the last to be taken again
      ++mapped_;
      ++c_.mapped;
      return make_id(idx, s.gen);
    }
    return status{errc::no_space, "every controller task ID is mapped", cap_};
  }

  // The kernel task is gone: its ID becomes stale. Refused while in flight.
  status unmap(std::uint64_t id) noexcept {
    slot* s = find(id, slot_state::mapped);
    if (s == nullptr) {
      if (find(id, slot_state::in_flight) != nullptr) return {errc::busy, "unmap of a task that is in flight", id};
      return {errc::stale, "unmap of an ID that is not mapped", id};
    }
    s->state = slot_state::free;
    --mapped_;
    ++c_.unmapped;
    return ok_status;
  }

  // The slot index of a live ID (mapped or in flight, generation checked):
  // for per-task state the caller keeps beside the table (the dext's data
  // buffer mappings).
  result<std::uint32_t> index_of(std::uint64_t id) noexcept {
    slot* s = find(id, slot_state::mapped);
    if (s == nullptr) s = find(id, slot_state::in_flight);
    if (s == nullptr) return classify(id, "").error();
    return static_cast<std::uint32_t>(s - slots_);
  }

  // UserProcessParallelTask: the ID's slot, now in flight.
  result<Payload*> begin(std::uint64_t id) noexcept {
    slot* s = find(id, slot_state::mapped);
    if (s == nullptr) return classify(id, "task ID already in flight (reused by the caller)");
    s->state = slot_state::in_flight;
    ++in_flight_;
    ++c_.started;
    return &s->payload;
  }

  // The in-flight slot of `id` (generation checked), or nullptr.
  Payload* in_flight_payload(std::uint64_t id) noexcept {
    slot* s = find(id, slot_state::in_flight);
    return s != nullptr ? &s->payload : nullptr;
  }

  // Completion of one use. A second finish, or one for an older generation,
  // is an error and changes nothing.
  status finish(std::uint64_t id) noexcept {
    slot* s = find(id, slot_state::in_flight);
    if (s == nullptr) {
      if (find(id, slot_state::mapped) != nullptr) {
        ++c_.duplicate;
        return {errc::duplicate, "second completion for the same task", id};
      }
      return classify(id, "").error();
    }
    s->state = slot_state::mapped;
    --in_flight_;
    ++c_.finished;
    return ok_status;
  }

  // f(id, payload&) for every task in flight.
  template <class F>
  void for_each_in_flight(F&& f) noexcept {
    for (std::uint32_t i = 0; i < cap_; ++i)
      if (slots_[i].state == slot_state::in_flight) f(make_id(i, slots_[i].gen), slots_[i].payload);
  }

  unsigned index_bits() const noexcept { return index_bits_; }

 private:
  struct slot {
    Payload payload{};
    std::uint32_t gen = 0;
    slot_state state = slot_state::free;
  };

  std::uint32_t make_id(std::uint32_t idx, std::uint32_t gen) const noexcept { return (gen << index_bits_) | idx; }

  slot* find(std::uint64_t id, slot_state want) noexcept {
    if (id > 0xFFFFFFFFull || slots_ == nullptr) return nullptr;
    const auto v = static_cast<std::uint32_t>(id);
    const std::uint32_t idx = v & ((1u << index_bits_) - 1);
    if (idx >= cap_) return nullptr;
    slot& s = slots_[idx];
    if (s.state != want || s.gen != (v >> index_bits_)) return nullptr;
    return &s;
  }

  result<Payload*> classify(std::uint64_t id, const char* in_flight_msg) noexcept {
    if (id > 0xFFFFFFFFull || slots_ == nullptr ||
        (static_cast<std::uint32_t>(id) & ((1u << index_bits_) - 1)) >= cap_) {
      ++c_.out_of_range;
      return status{errc::out_of_range, "controller task ID outside the task table", id};
    }
    if (in_flight_msg[0] != '\0' && find(id, slot_state::in_flight) != nullptr) {
      ++c_.reused_in_flight;
      return status{errc::busy, in_flight_msg, id};
    }
    ++c_.stale;
    return status{errc::stale, "controller task ID of an older generation or an unmapped task", id};
  }

  slot* slots_ = nullptr;
  std::uint32_t cap_ = 0;
  std::uint32_t next_ = 0;
  unsigned index_bits_ = 1;
  std::uint32_t gen_mask_ = 0;
  std::uint32_t mapped_ = 0;
  std::uint32_t in_flight_ = 0;
  task_table_counters c_{};
};

// ---- target discovery -------------------------------------------------------------------------

// Targets are the LDs' target IDs (0..63) and the SYSTEM (JBOD) physical
// drives at pd_target_base + PD target, created one at a time from an
// asynchronous action on a queue of their own (UserCreateTargetForID from the
// Default queue deadlocks: Apple, UserCreateTargetForID). The highest
// supported device ID is the whole LD + PD range, not the highest present
// target, so a drive added later can be created without re-initialising;
// the initiator ID sits just above it.
struct target_plan {
  std::uint16_t targets[max_targets] = {};
  std::uint32_t count = 0;
  std::uint32_t next = 0;
  std::uint64_t highest_device_id = max_targets - 1;
  std::uint64_t initiator_id = max_targets;

  // The next target to create, or false when every one was handed out.
  bool next_target(std::uint64_t& t) noexcept {
    if (next >= count) return false;
    t = targets[next++];
    return true;
  }
  bool contains(std::uint64_t target) const noexcept {
    for (std::uint32_t i = 0; i < count; ++i)
      if (targets[i] == target) return true;
    return false;
  }
};

// Ascending, each target once, targets outside 0..63 dropped (the core
// already refuses such a list; this keeps the plan safe on its own); then
// the SYSTEM physical drives. A PD that is not a system drive is never a
// target: it belongs to a logical drive or was not offered to the host.
inline target_plan make_target_plan(std::span<const logical_drive> lds,
                                    std::span<const physical_drive> pds = {}) noexcept {
  target_plan p;
  bool seen[max_targets] = {};
  for (const logical_drive& ld : lds)
    if (ld.target < mfi::max_ld) seen[ld.target] = true;
  for (const physical_drive& pd : pds)
    if (pd.system && pd.lun == 0) seen[pd_target_base + pd.target] = true;
  for (std::uint32_t t = 0; t < max_targets; ++t)
    if (seen[t]) p.targets[p.count++] = static_cast<std::uint16_t>(t);
  return p;
}

// ---- the asynchronous engine --------------------------------------------------------------------

struct engine_config {
  std::uint64_t task_version = 1;   // kScsiUserParallelTaskCurrentVersion1 (the glue passes the SDK's)
  std::uint32_t id_slack = 8;       // task IDs beyond the queue depth (the kernel may create a few more tasks)
  std::uint32_t bounce_chunk = 64u << 10;  // options::bounce_chunk the core was started with
  std::uint64_t timer_period_ns = 100'000'000ull;  // timeout scan; the core scans at most every 10 ms
};

struct engine_stats {
  std::uint64_t tasks = 0;             // UserProcessParallelTask calls
  std::uint64_t submitted = 0;         // frames the engine submitted (tasks + retries)
  std::uint64_t completed = 0;         // responses delivered through the sink
  std::uint64_t rejected = 0;          // answered without reaching the controller
  std::uint64_t sync_cache_forwarded = 0;   // SYNCHRONIZE CACHE frames sent (10 and 16)
  std::uint64_t sync16_fallbacks = 0;  // (16) refused, re-issued as (10)
  std::uint64_t sync16_direct_10 = 0;  // (16) sent as (10) at once: the LD refused (16) before
  std::uint64_t sync_widened = 0;      // (16) ranges that did not fit (10): whole medium
  std::uint64_t retries_deferred = 0;  // re-issue waited for a free frame
  std::uint64_t bad_ids = 0;           // tasks whose controller task ID did not check out
  std::uint64_t failed_at_stop = 0;    // in flight when the controller stopped
  std::uint64_t abort_requests = 0;    // ABORT TASK requests that named a task in flight
};

struct submit_outcome {
  bool in_process = false;  // true: the response comes later through the sink
  response_view response{}; // when !in_process: complete the task with this now
};

template <mfi_platform P>
class task_engine {
 public:
  // Called once per completed task, from inside service() (under the dext's lock).
  using sink_fn = void (*)(void* ctx, void* token, const response_view& r) noexcept;

  task_engine() noexcept = default;
  task_engine(const task_engine&) = delete;
  task_engine& operator=(const task_engine&) = delete;
  ~task_engine() { delete[] pending_; }

  // After controller::start() succeeded. The ID table is sized once (queue
  // depth + slack) and survives later attach() calls (a power cycle restarts
  // the core, but the kernel's tasks and their IDs live on).
  status attach(controller<P>& core, P& plat, sink_fn sink, void* ctx, const engine_config& cfg = {}) noexcept {
    if (sink == nullptr) return {errc::invalid_argument, "task engine needs a completion sink"};
    if (!core.operational()) return {errc::not_initialized, "attach the task engine to a started controller"};
    core_ = &core;
    plat_ = &plat;
    sink_ = sink;
    ctx_ = ctx;
    cfg_ = cfg;
    if (ids_.capacity() == 0) {
      const std::uint32_t n = core.info().queue_depth + cfg.id_slack;
      DKQ_TRY(ids_.init(n));
      pending_ = new (std::nothrow) std::uint32_t[n];
      if (pending_ == nullptr) return {errc::no_memory, "task engine retry list"};
    }
    npending_ = 0;
    auto h = compute_constraints(core.info());
    if (!h) return h.error();
    constraints_ = *h;
    return ok_status;
  }

  // The core object goes away (the dext re-creates it on power-on): every
  // later task is refused as "device not present" until attach() again.
  void detach() noexcept {
    core_ = nullptr;
    npending_ = 0;
  }
  bool attached() const noexcept { return core_ != nullptr; }

  // UserReportMaximumTaskCount: what the core may have in flight.
  std::uint32_t max_task_count() const noexcept { return core_ != nullptr ? core_->info().queue_depth : 0; }
  const hba_constraints& constraints() const noexcept { return constraints_; }
  dma_specification dma_spec() const noexcept {
    if (core_ == nullptr) return {};
    auto d = dma_spec_for(core_->info());
    return d ? *d : dma_specification{};
  }
  target_plan targets() const noexcept {
    return core_ != nullptr ? make_target_plan(core_->logical_drives(), core_->physical_drives()) : target_plan{};
  }

  // UserMapHBAData.
  result<std::uint32_t> map_task() noexcept { return ids_.map(); }
  status unmap_task(std::uint64_t id) noexcept { return ids_.unmap(id); }

  // Per-task state the glue keeps beside the engine (one entry per ID slot).
  std::uint32_t task_capacity() const noexcept { return ids_.capacity(); }
  result<std::uint32_t> task_index(std::uint64_t id) noexcept { return ids_.index_of(id); }

  // Whether UserProcessParallelTask must map the task's data buffer
  // (UserGetDataBuffer) before process(): only when the core bounces it, i.e.
  // a 32-bit SGL and data reaching above 4 GiB (plan_data_sgl).
  bool needs_data_buffer(const task_view& t) const noexcept {
    if (core_ == nullptr || t.requested_count == 0 || t.buffer_iovm_addr == 0) return false;
    if (core_->info().sgl != scsi::mfi_sgl_format::sgl32) return false;
    return t.buffer_iovm_addr + (t.requested_count - 1) > 0xFFFFFFFFull;
  }

  // UserProcessParallelTask. `token` is the retained completion OSAction.
  submit_outcome process(const task_view& t, const data_buffer& buf, void* token) noexcept {
    ++st_.tasks;
    submit_outcome o;
    auto slot = ids_.begin(t.controller_task_id);
    if (!slot) {
      ++st_.bad_ids;
      ++st_.rejected;
      o.response = failure_response(t, host_failure::delivery_failure, slot.error());
      return o;
    }
    task_state& s = **slot;
    auto fail = [&](const status& why) {
      (void)ids_.finish(t.controller_task_id);
      ++st_.rejected;
      o.response = reject_response(t, why);
      return o;
    };
    if (core_ == nullptr || !core_->operational())
      return fail({errc::not_initialized, "controller is not running"});
    auto r = to_request(t, buf, translate_limits{cfg_.task_version, core_->info().max_transfer});
    if (!r) return fail(r.error());
    if (r->kind == op::pd_scsi) {
      // Only a drive the controller exposes to the host as is.
      const physical_drive* pd = core_->physical_drive_at(r->target);
      if (pd == nullptr || !pd->system)
        return fail({errc::not_found, "not a system (JBOD) physical drive of this controller", t.target_id});
    }
    auto plan = plan_data_sgl(*r, core_->info(), cfg_.bounce_chunk);
    if (!plan) return fail(plan.error());
    if (plan->bounced && buf.cpu == nullptr)
      return fail({errc::invalid_argument, "bounced task without a mapped data buffer"});
    s = task_state{};
    s.owner = this;
    s.task = t;
    s.token = token;
    s.req = *r;
    s.req.done = &task_engine::on_done;
    s.req.user = &s;
    if (t.cdb[0] == scsi::op::synchronize_cache_16) {
      if (t.target_id < max_targets && sync16_rejected_[t.target_id]) {
        bool widened = false;
        sync16_to_sync10(t.cdb, s.req.cdb, widened);
        s.req.cdb_len = 10;
        ++st_.sync16_direct_10;
        if (widened) ++st_.sync_widened;
      } else {
        s.first16 = true;
      }
    }
    const status st = core_->submit(s.req);
    if (!st) return fail(st);
    ++st_.submitted;
    if (is_synchronize_cache(s.req.cdb[0])) ++st_.sync_cache_forwarded;
    o.in_process = true;
    return o;
  }

  // Drain every completion (the InterruptOccurred body; count > 1 changes
  // nothing: the reply queue is drained until empty), re-issue deferred
  // SYNCHRONIZE CACHE (10) retries, run the core's timeout scan. Returns the
  // completions reaped.
  std::uint32_t service() noexcept {
    if (core_ == nullptr) return 0;
    std::uint32_t total = 0;
    for (int rounds = 0; rounds < 1024; ++rounds) {
      const std::uint32_t n = core_->operational() ? core_->poll() : 0;
      total += n;
      const std::uint32_t r = submit_retries();
      if (n == 0 && r == 0) break;
    }
    return total;
  }

  // interrupt_bridge's dispatcher contract (platform/driverkit/interrupts.hpp).
  std::uint32_t on_interrupt(std::uint16_t, std::uint32_t) noexcept { return service(); }

  // The IOTimerDispatchSource handler: the same drain and timeout scan, for
  // commands whose completion interrupt never comes.
  std::uint32_t on_timer() noexcept { return service(); }
  std::uint64_t timer_period_ns() const noexcept { return cfg_.timer_period_ns; }

  // SetPowerState(off) / Stop: let in-flight tasks finish (until
  // drain_deadline_ns on the platform clock), SYNCHRONIZE CACHE to every LD
  // (reaches the backing store; the flush DCMD alone does not on QEMU), then
  // the core's stop (CTRL_CACHE_FLUSH DCMD, CTRL_SHUTDOWN, interrupts masked,
  // memory freed). Tasks still in flight are answered "device not present":
  // the controller will never answer them now (the core's stop() completes
  // those at the controller, with completion::stopped; the loop below answers
  // those waiting for a retry). Returns the first error.
  status shutdown(std::uint64_t drain_deadline_ns) noexcept {
    if (core_ == nullptr) return ok_status;
    status first = ok_status;
    if (core_->operational()) {
      while (ids_.in_flight() != 0 && plat_->now_ns() < drain_deadline_ns) {
        if (service() == 0) plat_->delay_us(1000);
      }
      for (const logical_drive& ld : core_->logical_drives()) {
        const completion c = core_->synchronize_cache(ld.target, false);
        ++st_.sync_cache_forwarded;
        if (!c.st && first.ok()) first = c.st;
      }
      for (const physical_drive& pd : core_->physical_drives()) {
        if (!pd.system) continue;
        const completion c = core_->synchronize_cache(pd.target, false, true);
        ++st_.sync_cache_forwarded;
        if (!c.st && first.ok()) first = c.st;
      }
    }
    const status s = core_->stop();
    if (!s && first.ok()) first = s;
    npending_ = 0;
    ids_.for_each_in_flight([&](std::uint32_t, task_state& ts) noexcept {
      ++st_.failed_at_stop;
      deliver(ts, failure_response(ts.task, host_failure::device_not_present,
                                   {errc::removed, "controller stopped with the task in flight"}));
    });
    return first;
  }

  const engine_stats& stats() const noexcept { return st_; }
  const task_table_counters& id_counters() const noexcept { return ids_.counters(); }
  std::uint32_t tasks_in_flight() const noexcept { return ids_.in_flight(); }
  bool sync16_rejected(std::uint64_t target) const noexcept { return target < max_targets && sync16_rejected_[target]; }

  // UserAbortTaskRequest(target, LUN, task tag): ABORT TASK for the task in
  // flight with that tag. A task waiting for its (10) retry is answered at
  // once; one at the controller gets an MFI ABORT frame (controller::abort)
  // and completes through service() with TASK ABORTED - or, if the firmware
  // ignores the ABORT, through the reset that follows, still once.
  // errc::invalid_argument when no such task is in flight.
  status abort_task(std::uint64_t target, std::uint64_t task_tag) noexcept {
    task_state* found = nullptr;
    ids_.for_each_in_flight([&](std::uint32_t, task_state& ts) noexcept {
      if (found == nullptr && ts.task.target_id == target && ts.task.task_tag == task_tag) found = &ts;
    });
    if (found == nullptr) return {errc::invalid_argument, "no task in flight with this tag", task_tag};
    ++st_.abort_requests;
    if (found->retry_pending) {
      found->retry_pending = false;
      completion c;
      c.aborted = true;
      c.st = {errc::io_error, "aborted before its SYNCHRONIZE CACHE (10) retry was posted"};
      deliver(*found, build_response(found->task, c));
      return ok_status;
    }
    if (core_ == nullptr || !core_->operational()) return {errc::not_initialized, "controller is not running"};
    return core_->abort(found);
  }

  // A completion delivered by someone other than the engine (tests, and the
  // glue's abort path): finishes the ID once; a second call is an error.
  status complete_external(std::uint64_t id, const response_view& r) noexcept {
    task_state* s = ids_.in_flight_payload(id);
    if (s == nullptr) return ids_.finish(id);  // classifies duplicate / stale
    deliver(*s, r);
    return ok_status;
  }

 private:
  struct task_state {
    task_engine* owner = nullptr;
    task_view task{};
    void* token = nullptr;
    request req{};
    bool first16 = false;      // a SYNCHRONIZE CACHE (16) on its first attempt
    bool retry_pending = false;
  };

  static void on_done(void* user, const completion& c) noexcept {
    auto* s = static_cast<task_state*>(user);
    s->owner->done(*s, c);
  }

  void done(task_state& s, const completion& c) noexcept {
    if (s.first16 && is_invalid_opcode(c)) {
      // Not an answer to give the OS: the flush has not happened. Re-issue as
      // (10) and complete only on the controller's answer to that.
      s.first16 = false;
      if (s.task.target_id < max_targets) sync16_rejected_[s.task.target_id] = true;
      ++st_.sync16_fallbacks;
      bool widened = false;
      sync16_to_sync10(s.task.cdb, s.req.cdb, widened);
      s.req.cdb_len = 10;
      if (widened) ++st_.sync_widened;
      s.retry_pending = true;
      // Posted after the drain (service()), not from inside the core's reply loop.
      pending_[npending_++] = static_cast<std::uint32_t>(s.task.controller_task_id);
      return;
    }
    if (c.stopped) ++st_.failed_at_stop;  // the core's stop() ended it (shutdown)
    deliver(s, build_response(s.task, c));
  }

  void deliver(task_state& s, const response_view& r) noexcept {
    void* token = s.token;
    const std::uint64_t id = s.task.controller_task_id;
    s.token = nullptr;
    if (!ids_.finish(id)) return;  // cannot happen for a state we hold; never deliver twice
    ++st_.completed;
    sink_(ctx_, token, r);
  }

  std::uint32_t submit_retries() noexcept {
    std::uint32_t sent = 0, keep = 0;
    for (std::uint32_t i = 0; i < npending_; ++i) {
      task_state* s = ids_.in_flight_payload(pending_[i]);
      if (s == nullptr || !s->retry_pending) continue;
      const status st = core_->operational() ? core_->submit(s->req)
                                             : status{errc::not_initialized, "controller is not running"};
      if (st.ok()) {
        s->retry_pending = false;
        ++st_.submitted;
        ++st_.sync_cache_forwarded;
        ++sent;
      } else if (st.code() == errc::no_space) {
        ++st_.retries_deferred;
        pending_[keep++] = pending_[i];
      } else {
        s->retry_pending = false;
        deliver(*s, failure_response(s->task, host_failure::delivery_failure, st));
      }
    }
    npending_ = keep;
    return sent;
  }

  controller<P>* core_ = nullptr;
  P* plat_ = nullptr;
  sink_fn sink_ = nullptr;
  void* ctx_ = nullptr;
  engine_config cfg_{};
  hba_constraints constraints_{};
  task_table<task_state> ids_;
  std::uint32_t* pending_ = nullptr;
  std::uint32_t npending_ = 0;
  bool sync16_rejected_[max_targets] = {};
  engine_stats st_{};
};

}  // namespace dkq::examples::megaraid::dext
