// dkq/platform/driverkit/apple/apple.hpp - the Apple-only DriverKit glue.
// Built with the DriverKit SDK (Xcode, macOS); on Linux compiled against Apple's
// published DriverKit declarations by ctest driverkit_sdk_compile.
#pragma once

#include "dkq/platform/driverkit/apple/dma_allocator.hpp"
#include "dkq/platform/driverkit/apple/interrupts.hpp"
#include "dkq/platform/driverkit/apple/pci_device.hpp"
