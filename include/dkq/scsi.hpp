// dkq/scsi.hpp - every header of the scsi layer.
#pragma once
#include "dkq/scsi/cdb.hpp"
#include "dkq/scsi/data.hpp"
#include "dkq/scsi/mfi.hpp"
#include "dkq/scsi/mfi_sgl.hpp"
#include "dkq/scsi/sense.hpp"
