/* Stand-in for Apple's <os/availability.h> (see README.md). A constant Apple
 * marks API_DEPRECATED_WITH_REPLACEMENT is deprecated for every deployment
 * target this project supports, so it warns here (and -Werror fails). */
#pragma once
#define API_DEPRECATED_WITH_REPLACEMENT(rep, ...) __attribute__((deprecated("use " rep " instead", rep)))
#define API_DEPRECATED(msg, ...) __attribute__((deprecated(msg)))
#define API_AVAILABLE(...)
#define API_UNAVAILABLE(...)
