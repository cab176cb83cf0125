/* Stand-in for DriverKit's <DriverKit/IOLib.h> (see ../README.md): memory,
 * locks, delays and the mach time functions, as Apple's DriverKit
 * documentation declares them. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <DriverKit/IOReturn.h>
#include <DriverKit/IOTypes.h>

#ifdef __cplusplus
extern "C" {
#endif

void* IOMalloc(size_t length);
void* IOMallocZero(size_t length);
void IOFree(void* address, size_t length);

typedef struct IOLock IOLock;
IOLock* IOLockAlloc(void);
void IOLockFree(IOLock* lock);
void IOLockLock(IOLock* lock);
bool IOLockTryLock(IOLock* lock);
void IOLockUnlock(IOLock* lock);

void IOSleep(uint64_t ms);
void IODelay(uint64_t us);
void IOLog(const char* format, ...) __attribute__((format(printf, 1, 2)));

struct mach_timebase_info {
  uint32_t numer;
  uint32_t denom;
};
typedef struct mach_timebase_info mach_timebase_info_data_t;
typedef struct mach_timebase_info* mach_timebase_info_t;
kern_return_t mach_timebase_info(mach_timebase_info_t info);
uint64_t mach_absolute_time(void);
uint64_t mach_continuous_time(void);

#if defined(__GLIBC__) && (__GLIBC__ < 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ < 38))
/* DriverKit's libc <string.h> declares strlcpy; glibc before 2.38 (Debian
 * 12 has 2.36) does not. */
size_t strlcpy(char* dst, const char* src, size_t size);
#endif

#ifdef __cplusplus
}
#endif

#define IONew(type, count) ((type*)IOMalloc(sizeof(type) * (count)))
#define IONewZero(type, count) ((type*)IOMallocZero(sizeof(type) * (count)))
#define IODelete(ptr, type, count) IOFree((ptr), sizeof(type) * (count))
#define IOSafeDeleteNULL(ptr, type, count) \
  do {                                     \
    if ((ptr) != NULL) {                   \
      IODelete((ptr), type, (count));      \
      (ptr) = NULL;                        \
    }                                      \
  } while (0)
