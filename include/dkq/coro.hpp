// dkq/coro.hpp - the coroutine layer: tasks with frames from a fixed arena,
// awaitable completions (one, all, any, deadline), queue-pair commands.
#pragma once

#include "dkq/coro/arena.hpp"
#include "dkq/coro/completion.hpp"
#include "dkq/coro/queue_op.hpp"
#include "dkq/coro/task.hpp"
