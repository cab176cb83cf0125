// dkq/ring.hpp - all host rings.
#pragma once
#include "dkq/ring/fan_in.hpp"
#include "dkq/ring/mpmc_ring.hpp"
#include "dkq/ring/ring_span.hpp"
#include "dkq/ring/spsc_ring.hpp"
