/* Stand-in for DriverKit's <DriverKit/OSMetaClass.h> (see ../README.md): the
 * root of the class hierarchy, run-time casts and the helpers the IIG output
 * relies on. OSObject.iig (Apple's, published) includes this file. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <DriverKit/IOReturn.h>
#include <DriverKit/IORPC.h>

class OSMetaClass;
class OSObject;

class OSMetaClassBase {
 public:
  virtual const OSMetaClass* getMetaClass() const = 0;
  virtual void retain() const = 0;
  virtual void release() const = 0;
  virtual bool isEqualTo(const OSMetaClassBase* anObject) const;
  virtual kern_return_t Dispatch(const IORPC rpc);
  static OSMetaClassBase* safeMetaCast(const OSMetaClassBase* anObject, const OSMetaClass* toMeta);

 protected:
  OSMetaClassBase();
  virtual ~OSMetaClassBase();
};

class OSMetaClass : public OSMetaClassBase {
 public:
  virtual kern_return_t New(OSObject* instance) = 0;
};

/* The base of each generated <Class>Interface (pure local methods). */
class OSInterface {};

#define OSTypeID(type) (g##type##MetaClass)
#define OSDynamicCast(type, inst) ((type*)OSMetaClassBase::safeMetaCast((inst), OSTypeID(type)))
#define OSRequiredCast(type, inst) OSDynamicCast(type, inst)

#define OSSafeReleaseNULL(inst) \
  do {                          \
    if ((inst) != NULL) {       \
      (inst)->release();        \
      (inst) = NULL;            \
    }                           \
  } while (0)

/* Calls the superclass's implementation of an IIG method: Start(provider, SUPERDISPATCH). */
#define SUPERDISPATCH ((OSDispatchMethod)&super::_Dispatch)
