// examples/nvme/driverkit/block_translation.hpp - BlockStorageDeviceDriverKit
// requests to NVMe commands, and completions back. Portable: no DriverKit
// header; unit-tested on Linux against the software controller
// (tests/nvme_dext/), compiled dext-style there too. DkqNVMe.cpp (the dext,
// built with Xcode only) is a thin shell that forwards each
// IOUserBlockStorageDevice call here.
//
// What IOUserBlockStorageDevice hands a driver (IOUserBlockStorageDevice.iig):
//   DoAsyncReadWrite(isRead, requestID, dmaAddr, size, lba, numOfBlocks, options)
//   DoAsyncSynchronize(requestID, lba, blockCount)      "flush the hardware buffer"
//   DoAsyncUnmap(requestID, ranges, count)              deallocate
//   CompleteIO(requestID, bytesTransferred, IOReturn)   once per request
// dmaAddr is a kernel-prepared device address for one contiguous segment; it
// goes into PRP/SGL exactly as given (the core builds the PRP list when the
// segment spans pages), never a CPU address.
//
// Rules kept here:
//  - a refusal (the return value of read_write/synchronize/unmap) means no
//    command was built; the shell then completes the request itself, once,
//    with to_io_return(status) through CompleteIO/Complete.
//  - requestID -> command: each accepted request takes a slot; the command's
//    user word is slot | generation << 32, so a completion naming a slot that
//    was retired (stale) or already completed cannot complete another request.
//    A requestID already in flight is refused (the kernel reusing an id, or a
//    dext bug, must not complete the wrong request).
//  - synchronize is an NVMe Flush sent to the namespace and completed only on
//    the device's answer, never locally, whatever VWC says
//    (docs/porting-a-kext.md: a flush acknowledged but never sent loses data).
//  - unmap of n ranges is n Dataset Management commands (one range each, the
//    core's deallocate); the request completes once, after the last, with the
//    first error if any.
//  - everything the kernel could get wrong is checked before a command is
//    built: zero blocks, size != blocks x block size, beyond the namespace,
//    beyond the transfer limit reported in GetDeviceParams, more than 65536
//    blocks (NLB is 16 bits), a dmaAddr that is not dword aligned (PRP rule).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "../driver/controller.hpp"

namespace dkq::nvme_driver::dext {

// The IOReturn a request completes with. Named, not numbered: DkqNVMe.cpp
// maps each to the kIOReturn constant of the same name, so this file needs no
// DriverKit header.
enum class io_return : std::uint8_t {
  success,       // kIOReturnSuccess
  bad_argument,  // kIOReturnBadArgument
  busy,          // kIOReturnBusy
  timeout,       // kIOReturnTimeout
  no_device,     // kIOReturnNoDevice
  unsupported,   // kIOReturnUnsupported
  io_error,      // kIOReturnIOError (media error)
  device_error,  // kIOReturnDeviceError
  not_ready,     // kIOReturnNotReady
};

constexpr const char* io_return_name(io_return r) noexcept {
  switch (r) {
    case io_return::success: return "kIOReturnSuccess";
    case io_return::bad_argument: return "kIOReturnBadArgument";
    case io_return::busy: return "kIOReturnBusy";
    case io_return::timeout: return "kIOReturnTimeout";
    case io_return::no_device: return "kIOReturnNoDevice";
    case io_return::unsupported: return "kIOReturnUnsupported";
    case io_return::io_error: return "kIOReturnIOError";
    case io_return::device_error: return "kIOReturnDeviceError";
    case io_return::not_ready: return "kIOReturnNotReady";
  }
  return "?";
}

// A dkq status (a completion's, or a refusal's) as an IOReturn.
constexpr io_return to_io_return(const status& s) noexcept {
  switch (s.code()) {
    case errc::ok: return io_return::success;
    case errc::invalid_argument:
    case errc::out_of_range:
    case errc::constraint: return io_return::bad_argument;
    case errc::no_space:
    case errc::busy: return io_return::busy;
    case errc::timeout: return io_return::timeout;
    case errc::removed: return io_return::no_device;
    case errc::not_supported: return io_return::unsupported;
    case errc::not_initialized: return io_return::not_ready;
    case errc::io_error: return io_return::io_error;
    default: return io_return::device_error;
  }
}

// What GetDeviceParams reports (DeviceParams fields of the same meaning).
struct device_params {
  std::uint64_t num_blocks = 0;
  std::uint32_t block_size = 0;
  std::uint64_t max_io_bytes = 0;       // per request; the kernel splits above it
  std::uint32_t max_outstanding = 0;    // numOfOutstandingIOs
  std::uint32_t max_unmap_regions = 0;  // 0 = unmap not supported
  bool write_cache = false;             // VWC: the device has a volatile cache
  bool write_zeroes = false;            // ONCS: Write Zeroes
};

// Parameters for namespace `ns` served by an I/O queue that holds
// `queue_slots` commands at once (io_queue::depth(): the ring size less the
// slot kept empty) on a controller with `max_transfer` bytes per command.
inline result<device_params> make_device_params(const controller_info& ci, const namespace_info& ns,
                                                std::uint64_t max_transfer, std::uint32_t queue_slots,
                                                std::uint32_t max_unmap_regions = 16) noexcept {
  if (!ns.usable) return status{errc::not_supported, ns.why_not != nullptr ? ns.why_not : "namespace not usable"};
  if (ns.block_size == 0 || ns.nsze == 0) return status{errc::protocol_error, "namespace without blocks"};
  if (queue_slots == 0) return status{errc::invalid_argument, "I/O queue without command slots"};
  if (max_transfer < ns.block_size)
    return status{errc::protocol_error, "controller transfer limit below one block", max_transfer};
  device_params p;
  p.num_blocks = ns.nsze;
  p.block_size = ns.block_size;
  // Whole blocks, and at most 65536 of them (NLB is a 16-bit count).
  std::uint64_t m = max_transfer - max_transfer % ns.block_size;
  const std::uint64_t nlb_cap = std::uint64_t{65536} * ns.block_size;
  p.max_io_bytes = m < nlb_cap ? m : nlb_cap;
  p.max_outstanding = queue_slots;
  p.max_unmap_regions = ci.dsm_supported() ? max_unmap_regions : 0;
  p.write_cache = ci.volatile_write_cache();
  p.write_zeroes = ci.write_zeroes_supported();
  return p;
}

struct rw_request {
  bool is_read = true;
  std::uint32_t request_id = 0;
  std::uint64_t dma_addr = 0;
  std::uint64_t size = 0;
  std::uint64_t lba = 0;
  std::uint64_t blocks = 0;
  bool fua = false;  // kIOStorageOptionForceUnitAccess
};

struct unmap_range {
  std::uint64_t lba = 0;
  std::uint64_t blocks = 0;
};

// internal_flush: a Flush the driver sends on its own behalf (before
// shutdown); it has no kernel request ID and is never reported to the kernel.
enum class request_kind : std::uint8_t { read, write, synchronize, unmap, internal_flush, write_zeroes };

// One finished request: CompleteIO(request_id, bytes, ret) for read/write,
// Complete(request_id, ret) for synchronize and unmap.
struct block_completion {
  std::uint32_t request_id = 0;
  request_kind kind = request_kind::read;
  std::uint64_t bytes = 0;
  io_return ret = io_return::success;
  status st{};  // the underlying status, for the log
};

struct translator_counters {
  std::uint64_t reads = 0, writes = 0, flushes = 0, unmaps = 0, unmap_commands = 0, write_zeroes = 0;
  std::uint64_t completed = 0, failed = 0, refused = 0;
  std::uint64_t stale = 0;  // completions naming a retired slot (never delivered)
};

// Queue: the core's io_queue<P> (or anything with its read/write/flush/
// deallocate/ring/poll/check_timeouts). MaxSlots bounds the requests in flight.
template <class Queue, std::uint32_t MaxSlots = 1024>
class block_translator {
 public:
  block_translator() noexcept = default;
  block_translator(const block_translator&) = delete;
  block_translator& operator=(const block_translator&) = delete;

  status init(Queue& q, std::uint32_t nsid, const device_params& p) noexcept {
    if (p.block_size == 0 || p.num_blocks == 0) return {errc::invalid_argument, "device parameters without blocks"};
    if (p.max_outstanding == 0 || p.max_outstanding > MaxSlots)
      return {errc::invalid_argument, "outstanding I/O count outside 1..MaxSlots", p.max_outstanding};
    q_ = &q;
    nsid_ = nsid;
    p_ = p;
    for (auto& w : id_) w = 0;
    for (std::uint32_t i = 0; i < MaxSlots; ++i) slots_[i] = slot{};
    free_top_ = p.max_outstanding;
    // Only the first max_outstanding slots are handed out.
    for (std::uint32_t i = 0; i < p.max_outstanding; ++i) free_[i] = p.max_outstanding - 1 - i;
    return ok_status;
  }

  const device_params& params() const noexcept { return p_; }
  const translator_counters& counters() const noexcept { return c_; }
  std::uint32_t in_flight() const noexcept { return p_.max_outstanding - free_top_; }

  // DoAsyncReadWrite. A refusal is returned (the shell completes the request
  // with to_io_return(status) at once, through CompleteIO); on success the
  // request completes later through poll().
  status read_write(const rw_request& r) noexcept {
    if (q_ == nullptr) return refuse({errc::not_initialized, "translator not initialised"});
    if (r.blocks == 0) return refuse({errc::invalid_argument, "read/write of 0 blocks"});
    if (r.blocks > 65536) return refuse({errc::invalid_argument, "more than 65536 blocks in one command", r.blocks});
    if (r.size / p_.block_size != r.blocks || r.size % p_.block_size != 0)
      return refuse({errc::invalid_argument, "byte count is not blocks x block size", r.size});
    if (r.lba >= p_.num_blocks || p_.num_blocks - r.lba < r.blocks)
      return refuse({errc::out_of_range, "request beyond the end of the namespace", r.lba});
    if (r.size > p_.max_io_bytes)
      return refuse({errc::invalid_argument, "request larger than the maximum reported in GetDeviceParams", r.size});
    if (r.dma_addr == 0 || (r.dma_addr & 3) != 0)
      return refuse({errc::invalid_argument, "DMA address zero or not dword aligned", r.dma_addr});
    auto s = take(r.request_id, 1, r.size, r.is_read ? request_kind::read : request_kind::write);
    if (!s) return refuse(s.error());
    const std::uint64_t user = *s;
    const dma_segment seg{dev_addr{r.dma_addr}, r.size};
    const auto nlb = static_cast<std::uint32_t>(r.blocks);
    status st = r.is_read ? q_->read(nsid_, r.lba, nlb, seg, user) : q_->write(nsid_, r.lba, nlb, seg, user, r.fua);
    if (!st) {
      put(static_cast<std::uint32_t>(user));
      return refuse(st);
    }
    ++(r.is_read ? c_.reads : c_.writes);
    return ok_status;
  }

  // DoAsyncSynchronize: an NVMe Flush of the namespace (the whole volatile
  // cache; the block range is advisory in the API and Flush has none).
  status synchronize(std::uint32_t request_id) noexcept {
    if (q_ == nullptr) return refuse({errc::not_initialized, "translator not initialised"});
    auto s = take(request_id, 1, 0, request_kind::synchronize);
    if (!s) return refuse(s.error());
    status st = q_->flush(nsid_, *s);
    if (!st) {
      put(static_cast<std::uint32_t>(*s));
      return refuse(st);
    }
    ++c_.flushes;
    return ok_status;
  }

  // A Flush for the driver itself (Stop, power-off): completes through poll()
  // with kind internal_flush and request_id 0, outside the kernel's ID space.
  status flush_internal() noexcept {
    if (q_ == nullptr) return refuse({errc::not_initialized, "translator not initialised"});
    auto s = take(0, 1, 0, request_kind::internal_flush);
    if (!s) return refuse(s.error());
    status st = q_->flush(nsid_, *s);
    if (!st) {
      put(static_cast<std::uint32_t>(*s));
      return refuse(st);
    }
    ++c_.flushes;
    return ok_status;
  }

  // Write Zeroes (the Linux shell's ublk WRITE_ZEROES; the dext API has no
  // such call): the blocks read back as zeroes afterwards. DEAC is never set,
  // so they also stay allocated, which is what ublk's NOUNMAP asks and
  // harmless when it does not.
  status write_zeroes(std::uint32_t request_id, std::uint64_t lba, std::uint64_t blocks) noexcept {
    if (q_ == nullptr) return refuse({errc::not_initialized, "translator not initialised"});
    if (!p_.write_zeroes) return refuse({errc::not_supported, "controller has no Write Zeroes (ONCS bit 3)"});
    if (blocks == 0 || blocks > 65536)
      return refuse({errc::invalid_argument, "write zeroes of 0 or more than 65536 blocks", blocks});
    if (lba >= p_.num_blocks || p_.num_blocks - lba < blocks)
      return refuse({errc::out_of_range, "write zeroes beyond the end of the namespace", lba});
    auto s = take(request_id, 1, 0, request_kind::write_zeroes);
    if (!s) return refuse(s.error());
    status st = q_->write_zeroes(nsid_, lba, static_cast<std::uint32_t>(blocks), *s);
    if (!st) {
      put(static_cast<std::uint32_t>(*s));
      return refuse(st);
    }
    ++c_.write_zeroes;
    return ok_status;
  }

  // DoAsyncUnmap: one Dataset Management (deallocate) per range.
  status unmap(std::uint32_t request_id, std::span<const unmap_range> ranges) noexcept {
    if (q_ == nullptr) return refuse({errc::not_initialized, "translator not initialised"});
    if (p_.max_unmap_regions == 0) return refuse({errc::not_supported, "controller has no Dataset Management"});
    if (ranges.empty()) return refuse({errc::invalid_argument, "unmap without ranges"});
    if (ranges.size() > p_.max_unmap_regions)
      return refuse({errc::invalid_argument, "more unmap ranges than reported", ranges.size()});
    for (const unmap_range& u : ranges) {
      if (u.blocks == 0 || u.blocks > 0xffffffffull)
        return refuse({errc::invalid_argument, "unmap range of 0 or more than 2^32-1 blocks", u.blocks});
      if (u.lba >= p_.num_blocks || p_.num_blocks - u.lba < u.blocks)
        return refuse({errc::out_of_range, "unmap range beyond the end of the namespace", u.lba});
    }
    auto s = take(request_id, static_cast<std::uint32_t>(ranges.size()), 0, request_kind::unmap);
    if (!s) return refuse(s.error());
    const std::uint32_t idx = static_cast<std::uint32_t>(*s);
    std::uint32_t posted = 0;
    for (const unmap_range& u : ranges) {
      status st = q_->deallocate(nsid_, u.lba, static_cast<std::uint32_t>(u.blocks), *s);
      if (!st) {
        // The ranges already posted complete normally; the rest count as done
        // with this error, so the request still completes exactly once.
        slot& sl = slots_[idx];
        if (sl.first_error.ok()) sl.first_error = st;
        sl.remaining -= static_cast<std::uint32_t>(ranges.size()) - posted;
        if (posted == 0) {
          put(idx);
          return refuse(st);
        }
        break;
      }
      ++posted;
      ++c_.unmap_commands;
    }
    ++c_.unmaps;
    return ok_status;
  }

  // Submission doorbell: once per batch of calls (the shell rings after each
  // DoAsync* entry point returns, or at the end of a burst).
  bool ring() noexcept { return q_ != nullptr && q_->ring(); }

  // Reaps completions; done(const block_completion&) once per request.
  template <class Done>
  std::uint32_t poll(std::uint32_t budget, Done&& done) noexcept {
    if (q_ == nullptr) return 0;
    std::uint32_t finished = 0;
    q_->poll(budget, [&](const io_completion& c) { finished += on_completion(c, done); });
    return finished;
  }

  // Timeout scan (an IOTimerDispatchSource in the dext): expired commands are
  // aborted by the core and their requests complete with kIOReturnTimeout.
  template <class Done>
  std::uint32_t check_timeouts(Done&& done) noexcept {
    if (q_ == nullptr) return 0;
    std::uint32_t finished = 0;
    q_->check_timeouts([&](const io_completion& c) { finished += on_completion(c, done); });
    return finished;
  }

  // Ends every request still in flight, each exactly once, with `why` (its
  // first error if it already had one). For Stop after the bounded wait: the
  // caller has already stopped the controller (queue deleted, CC.EN cleared),
  // so no command can still move data into the kernel's buffers, and any
  // completion that still arrives names a retired slot generation and is
  // counted as stale, never delivered.
  template <class Done>
  std::uint32_t fail_all(status why, Done&& done) noexcept {
    std::uint32_t n = 0;
    for (std::uint32_t i = 0; i < p_.max_outstanding; ++i) {
      slot& s = slots_[i];
      if (!s.busy) continue;
      block_completion out;
      out.request_id = s.request_id;
      out.kind = s.kind;
      out.st = s.first_error.ok() ? why : s.first_error;
      out.ret = to_io_return(out.st);
      out.bytes = 0;
      ++c_.failed;
      put(i);
      done(out);
      ++n;
    }
    return n;
  }

 private:
  struct slot {
    std::uint32_t request_id = 0;
    std::uint32_t gen = 0;
    std::uint32_t remaining = 0;  // commands still outstanding (unmap: ranges)
    std::uint64_t bytes = 0;
    status first_error{};
    request_kind kind = request_kind::read;
    bool busy = false;
  };

  status refuse(status s) noexcept {
    ++c_.refused;
    return s;
  }

  // A slot for `request_id`, as the command's user word.
  result<std::uint64_t> take(std::uint32_t request_id, std::uint32_t commands, std::uint64_t bytes,
                             request_kind kind) noexcept {
    const bool internal = kind == request_kind::internal_flush;
    if (!internal && id_in_flight(request_id))
      return status{errc::duplicate, "request ID already in flight", request_id};
    if (free_top_ == 0) return status{errc::busy, "more requests than numOfOutstandingIOs", p_.max_outstanding};
    if (!internal && request_id < id_bits) id_[request_id / 64] |= std::uint64_t{1} << (request_id % 64);
    const std::uint32_t i = free_[--free_top_];
    slot& s = slots_[i];
    s.busy = true;
    s.request_id = request_id;
    s.remaining = commands;
    s.bytes = bytes;
    s.kind = kind;
    s.first_error = ok_status;
    return std::uint64_t{i} | (std::uint64_t{s.gen} << 32);
  }

  // Request IDs are small in practice (below numOfOutstandingIOs): a bitmap
  // answers for IDs below 64 Ki, a scan of the slots for any larger one.
  static constexpr std::uint32_t id_bits = 65536;
  bool id_in_flight(std::uint32_t id) const noexcept {
    if (id < id_bits) return (id_[id / 64] >> (id % 64)) & 1u;
    for (std::uint32_t i = 0; i < p_.max_outstanding; ++i)
      if (slots_[i].busy && slots_[i].kind != request_kind::internal_flush && slots_[i].request_id == id) return true;
    return false;
  }

  void put(std::uint32_t i) noexcept {
    const std::uint32_t id = slots_[i].request_id;
    if (slots_[i].kind != request_kind::internal_flush && id < id_bits) id_[id / 64] &= ~(std::uint64_t{1} << (id % 64));
    slots_[i].busy = false;
    ++slots_[i].gen;
    free_[free_top_++] = i;
  }

  template <class Done>
  std::uint32_t on_completion(const io_completion& c, Done& done) noexcept {
    const auto i = static_cast<std::uint32_t>(c.user);
    const auto gen = static_cast<std::uint32_t>(c.user >> 32);
    if (i >= p_.max_outstanding || !slots_[i].busy || slots_[i].gen != gen) {
      ++c_.stale;
      return 0;
    }
    slot& s = slots_[i];
    if (!c.st.ok() && s.first_error.ok()) s.first_error = c.st;
    if (--s.remaining != 0) return 0;
    block_completion out;
    out.request_id = s.request_id;
    out.kind = s.kind;
    out.st = s.first_error;
    out.ret = to_io_return(s.first_error);
    out.bytes = s.first_error.ok() ? s.bytes : 0;
    if (out.st.ok()) ++c_.completed; else ++c_.failed;
    put(i);
    done(out);
    return 1;
  }

  Queue* q_ = nullptr;
  std::uint32_t nsid_ = 0;
  device_params p_{};
  slot slots_[MaxSlots]{};
  std::uint32_t free_[MaxSlots]{};
  std::uint32_t free_top_ = 0;
  std::uint64_t id_[id_bits / 64]{};
  translator_counters c_{};
};

}  // namespace dkq::nvme_driver::dext
