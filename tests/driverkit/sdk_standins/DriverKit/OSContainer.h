/* Stand-in (see ../README.md): OSObject.iig forward-declares OSContainer for
 * DriverKit (a class of its own there, OSObject itself in the kernel); the
 * container classes below derive from it. */
#pragma once
#include <DriverKit/OSObject.h>

class OSContainer : public OSObject {};
extern OSMetaClass* gOSContainerMetaClass;
