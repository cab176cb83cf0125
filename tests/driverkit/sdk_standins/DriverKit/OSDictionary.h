/* Stand-in for DriverKit's OSDictionary (see ../README.md).
 * IOUserSCSIParallelInterfaceController.iig includes <DriverKit/OSDictionary.iig>,
 * which dkq_iig turns into this header's name. */
#pragma once
#include <DriverKit/OSContainer.h>

class OSString;

class OSDictionary : public OSContainer {
 public:
  static OSDictionary* withCapacity(uint32_t capacity);
  bool setObject(const char* aKey, const OSMetaClassBase* anObject);
  bool setObject(const OSString* aKey, const OSMetaClassBase* anObject);
  OSObject* getObject(const char* aKey) const;
  uint32_t getCount() const;
};
extern OSMetaClass* gOSDictionaryMetaClass;  // what OSDynamicCast(OSDictionary, ...) names
