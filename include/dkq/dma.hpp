// dkq/dma.hpp - every header of the dma layer.
#pragma once
#include "dkq/dma/bounce.hpp"
#include "dkq/dma/constraints.hpp"
#include "dkq/dma/iova.hpp"
#include "dkq/dma/pool.hpp"
#include "dkq/dma/region.hpp"
