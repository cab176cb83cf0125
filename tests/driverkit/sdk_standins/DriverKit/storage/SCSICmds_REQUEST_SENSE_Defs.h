/* Stand-in for DriverKit's <DriverKit/storage/SCSICmds_REQUEST_SENSE_Defs.h>
 * (see ../../README.md): SCSI_Sense_Data is in Apple's published
 * SCSIControllerDriverKit/SCSIDefinitions.h. */
#pragma once
#include <DriverKit/storage/SCSITask.h>
