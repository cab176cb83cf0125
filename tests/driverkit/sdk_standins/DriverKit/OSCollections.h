/* Stand-in for DriverKit's <DriverKit/OSCollections.h> (see ../README.md). */
#pragma once
#include <DriverKit/OSArray.h>
#include <DriverKit/OSDictionary.h>
#include <DriverKit/OSNumber.h>
#include <DriverKit/OSString.h>
