// dkq/nvme.hpp - every header of the nvme layer.
#pragma once
#include "dkq/nvme/commands.hpp"
#include "dkq/nvme/prp.hpp"
#include "dkq/nvme/sgl.hpp"
#include "dkq/nvme/spec.hpp"
#include "dkq/nvme/status.hpp"
