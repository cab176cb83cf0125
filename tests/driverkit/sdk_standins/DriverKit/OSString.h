/* Stand-in for DriverKit's OSString (see ../README.md). */
#pragma once
#include <DriverKit/OSObject.h>

class OSString : public OSObject {
 public:
  static OSString* withCString(const char* cString);
  const char* getCStringNoCopy() const;
  size_t getLength() const;
};
