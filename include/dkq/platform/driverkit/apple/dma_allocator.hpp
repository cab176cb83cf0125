// dkq/platform/driverkit/apple/dma_allocator.hpp - DMA memory through
// IOBufferMemoryDescriptor + IODMACommand, as dkq::dma_region.
//
// Compiled on Linux only against Apple's published DriverKit declarations
// (ctest driverkit_sdk_compile); built for real with Xcode. The
// checks on what PrepareForDMA answers and the bookkeeping of live regions
// are the portable ../dma_book.hpp, unit-tested on Linux.
//
// alloc(bytes, address_bits, alignment): a zeroed buffer, mapped for the CPU,
// prepared for the device by an IODMACommand created with maxAddressBits =
// address_bits (32 for controllers whose control structures must sit below
// 4 GiB), returned only if the device sees it as one contiguous range. The
// device address is the segment PrepareForDMA returned: never the CPU address,
// never a physical address computed by hand (docs/porting-a-kext.md).
#pragma once

#include <DriverKit/DriverKit.h>
#include <DriverKit/IOBufferMemoryDescriptor.h>
#include <DriverKit/IODMACommand.h>

#include <cstdint>
#include <cstring>

#include "dkq/dma/region.hpp"
#include "dkq/platform/driverkit/apple/pci_device.hpp"
#include "dkq/platform/driverkit/dma_book.hpp"

namespace dkq::driverkit::apple {

struct dma_objects {
  IOBufferMemoryDescriptor* mem = nullptr;
  IOMemoryMap* map = nullptr;
  IODMACommand* cmd = nullptr;
};

inline void release_objects(dma_objects& o) noexcept {
  if (o.cmd != nullptr) {
    o.cmd->CompleteDMA(kIODMACommandCompleteDMANoOptions);
    o.cmd->release();
  }
  if (o.map != nullptr) o.map->release();
  if (o.mem != nullptr) o.mem->release();
  o = dma_objects{};
}

template <std::size_t MaxRegions = 256>
class dma_allocator {
 public:
  dma_allocator() noexcept = default;
  dma_allocator(const dma_allocator&) = delete;
  dma_allocator& operator=(const dma_allocator&) = delete;
  ~dma_allocator() { release_all(); }

  // `device`: the IOPCIDevice the commands are created for.
  void init(IOService* device) noexcept { dev_ = device; }

  result<dma_region> alloc(std::size_t bytes, unsigned address_bits = 64, std::size_t alignment = 4096) noexcept {
    if (dev_ == nullptr) return status{errc::not_initialized, "DMA allocator has no device"};
    if (bytes == 0) return status{errc::invalid_argument, "DMA allocation of 0 bytes"};
    dma_objects o;
    kern_return_t kr = IOBufferMemoryDescriptor::Create(kIOMemoryDirectionInOut, bytes, alignment, &o.mem);
    if (kr != kIOReturnSuccess) return from_kern(kr, "IOBufferMemoryDescriptor::Create failed");
    o.mem->SetLength(bytes);
    kr = o.mem->CreateMapping(0, 0, 0, 0, 0, &o.map);
    if (kr != kIOReturnSuccess) {
      release_objects(o);
      return from_kern(kr, "CreateMapping of a DMA buffer failed");
    }
    IODMACommandSpecification spec{};
    spec.options = kIODMACommandSpecificationNoOptions;
    spec.maxAddressBits = address_bits;  // uint64_t in IODMACommandSpecification (IODMACommand.iig)
    kr = IODMACommand::Create(dev_, kIODMACommandCreateNoOptions, &spec, &o.cmd);
    if (kr != kIOReturnSuccess) {
      release_objects(o);
      return from_kern(kr, "IODMACommand::Create failed");
    }
    std::uint64_t flags = 0;
    std::uint32_t count = 32;
    IOAddressSegment segs[32] = {};
    kr = o.cmd->PrepareForDMA(kIODMACommandPrepareForDMANoOptions, o.mem, 0, bytes, &flags, &count, segs);
    if (kr != kIOReturnSuccess) {
      o.cmd->release();  // not prepared: nothing to complete
      o.cmd = nullptr;
      release_objects(o);
      return from_kern(kr, "IODMACommand::PrepareForDMA failed");
    }
    dma_segment mine[32];
    for (std::uint32_t i = 0; i < count && i < 32; ++i) mine[i] = dma_segment{dev_addr{segs[i].address}, segs[i].length};
    void* cpu = reinterpret_cast<void*>(o.map->GetAddress());
    auto r = region_from_segments(cpu, bytes, std::span<const dma_segment>(mine, count), address_bits, alignment);
    if (!r) {
      release_objects(o);
      return r.error();
    }
    std::memset(cpu, 0, bytes);
    if (status s = book_.add(*r, o); !s) {
      release_objects(o);
      return s;
    }
    return *r;
  }

  status free(const dma_region& r) noexcept {
    auto h = book_.remove(r);
    if (!h) return h.error();
    dma_objects o = *h;
    release_objects(o);
    return ok_status;
  }

  std::size_t release_all() noexcept {
    return book_.drain([](const dma_region&, const dma_objects& h) {
      dma_objects o = h;
      release_objects(o);
    });
  }

  std::size_t live() const noexcept { return book_.live(); }

 private:
  IOService* dev_ = nullptr;
  dma_book<dma_objects, MaxRegions> book_;
};

}  // namespace dkq::driverkit::apple
