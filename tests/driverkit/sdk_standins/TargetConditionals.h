/* Stand-in for Apple's <TargetConditionals.h> (see README.md): the dext is
 * built for the DriverKit platform. */
#pragma once
#define TARGET_OS_DRIVERKIT 1
#define TARGET_OS_OSX 0
#define TARGET_OS_IPHONE 0
