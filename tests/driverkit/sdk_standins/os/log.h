/* Stand-in for DriverKit's <os/log.h> (see README.md). Apple's clang checks
 * os_log format strings ("%{public}s"); this stand-in does not. */
#pragma once
#include <stdint.h>

typedef struct os_log_s* os_log_t;
extern struct os_log_s _os_log_default;
#define OS_LOG_DEFAULT (&_os_log_default)

#ifdef __cplusplus
extern "C" {
#endif
void _dkq_os_log_standin(os_log_t log, const char* format, ...);
#ifdef __cplusplus
}
#endif

#define os_log(log, format, ...) _dkq_os_log_standin((log), (format), ##__VA_ARGS__)
