// dkq/base.hpp - the whole base layer.
#pragma once
#include "dkq/base/barrier.hpp"
#include "dkq/base/bits.hpp"
#include "dkq/base/config.hpp"
#include "dkq/base/mmio.hpp"
#include "dkq/base/status.hpp"
#include "dkq/base/wait.hpp"
