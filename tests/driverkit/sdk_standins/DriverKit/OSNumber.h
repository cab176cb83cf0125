/* Stand-in for DriverKit's OSNumber (see ../README.md). */
#pragma once
#include <DriverKit/OSContainer.h>

class OSNumber : public OSContainer {
 public:
  static OSNumber* withNumber(uint64_t value, size_t numberOfBits);
  uint64_t unsigned64BitValue() const;
  uint32_t unsigned32BitValue() const;
};
extern OSMetaClass* gOSNumberMetaClass;  // what OSDynamicCast(OSNumber, ...) names
