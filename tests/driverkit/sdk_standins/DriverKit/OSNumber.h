/* Stand-in for DriverKit's OSNumber (see ../README.md). */
#pragma once
#include <DriverKit/OSObject.h>

class OSNumber : public OSObject {
 public:
  static OSNumber* withNumber(uint64_t value, size_t numberOfBits);
  uint64_t unsigned64BitValue() const;
  uint32_t unsigned32BitValue() const;
};
