// dkq/queue.hpp - every header of the queue layer.
#pragma once
#include "dkq/queue/completion_queue.hpp"
#include "dkq/queue/doorbell.hpp"
#include "dkq/queue/queue_pair.hpp"
#include "dkq/queue/ring_pair.hpp"
#include "dkq/queue/submission_queue.hpp"
#include "dkq/queue/tag_table.hpp"
