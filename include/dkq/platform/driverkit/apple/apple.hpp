// dkq/platform/driverkit/apple/apple.hpp - the Apple-only DriverKit glue.
// NOT COMPILED ON THE LINUX CI: needs the DriverKit SDK (Xcode, macOS).
#pragma once

#include "dkq/platform/driverkit/apple/dma_allocator.hpp"
#include "dkq/platform/driverkit/apple/interrupts.hpp"
#include "dkq/platform/driverkit/apple/pci_device.hpp"
