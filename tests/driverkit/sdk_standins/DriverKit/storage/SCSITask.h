/* Stand-in for DriverKit's <DriverKit/storage/SCSITask.h> (see ../../README.md),
 * included by Apple's IOUserSCSIParallelInterfaceController.iig. The task types
 * (SCSITargetIdentifier, SCSITaskStatus, SCSIServiceResponse, the transfer
 * directions, SCSICommandDescriptorBlock ...) are in Apple's published
 * SCSIControllerDriverKit/SCSIDefinitions.h, which this file includes.
 * SCSIDefinitions.h also declares the SCSIParallelFeature enums, identical to
 * those of IOSCSIParallelControllerCharacteristics.h (the .iig includes that
 * next), so that header's guard is set here to keep one copy. */
#pragma once
#include <stdint.h>
#include <SCSIControllerDriverKit/SCSIDefinitions.h>
#define _IO_SCSI_PARALLEL_CONTROLLER_CHARACTERISTICS_H_
