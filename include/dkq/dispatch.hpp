// dkq/dispatch.hpp - every header of the dispatch layer.
#pragma once
#include "dkq/dispatch/dispatcher.hpp"
#include "dkq/dispatch/handoff.hpp"
