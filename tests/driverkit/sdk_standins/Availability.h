/* Stand-in for Apple's <Availability.h> (see README.md): the dext .iig files
 * include it; nothing in the compiled sources uses its macros. */
#pragma once
