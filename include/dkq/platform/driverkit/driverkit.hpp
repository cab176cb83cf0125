// dkq/platform/driverkit/driverkit.hpp - the portable half of the DriverKit
// backend: everything the dext glue decides that does not need Apple's
// headers, compiled and unit-tested on Linux (tests/driverkit/).
//
//   bar_table.hpp       BAR number -> memory index, resolved once (GetBARInfo)
//   indexed_window.hpp  registers through MemoryRead32/MemoryWrite32 by BAR
//   dma_book.hpp        PrepareForDMA segments -> dma_region; live-region table
//   interrupts.hpp      MSI-X/MSI capability walk, vector plan, InterruptOccurred
//                       -> dispatcher bridge (count > 1 drains everything)
//
// The Apple-only glue is in apple/ (IOPCIDevice, IOBufferMemoryDescriptor +
// IODMACommand, IOInterruptDispatchSource); it is built with Xcode and the
// DriverKit SDK, and on Linux only compiled (-fsyntax-only) against Apple's
// published interface declarations (ctest driverkit_sdk_compile).
#pragma once

#include "dkq/platform/driverkit/bar_table.hpp"
#include "dkq/platform/driverkit/dma_book.hpp"
#include "dkq/platform/driverkit/indexed_window.hpp"
#include "dkq/platform/driverkit/interrupts.hpp"
