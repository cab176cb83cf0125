/* Stand-in for Apple's <sys/_types/_uuid_t.h> (see README.md). */
#pragma once
typedef unsigned char uuid_t[16];
