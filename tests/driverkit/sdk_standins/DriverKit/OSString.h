/* Stand-in for DriverKit's OSString (see ../README.md). */
#pragma once
#include <DriverKit/OSContainer.h>

class OSString : public OSContainer {
 public:
  static OSString* withCString(const char* cString);
  const char* getCStringNoCopy() const;
  size_t getLength() const;
};
extern OSMetaClass* gOSStringMetaClass;  // what OSDynamicCast(OSString, ...) names
