/* Stand-in for DriverKit's OSArray (see ../README.md). */
#pragma once
#include <DriverKit/OSContainer.h>

class OSArray : public OSContainer {
 public:
  static OSArray* withCapacity(uint32_t capacity);
  bool setObject(const OSMetaClassBase* anObject);
  uint32_t getCount() const;
  OSObject* getObject(uint32_t index) const;
};
extern OSMetaClass* gOSArrayMetaClass;  // what OSDynamicCast(OSArray, ...) names
