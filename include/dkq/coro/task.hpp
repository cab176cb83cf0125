// dkq/coro/task.hpp - the coroutine type of dkq: task<T>.
//
// A task is lazy: calling the coroutine allocates its frame (from a
// frame_arena, see arena.hpp) and stops before the first statement. It runs
// when awaited by another task (which is resumed when it finishes: symmetric
// transfer, no stack growth) or when a driver loop calls start() on it and
// then keeps the completion path turning until done().
//
//   task<status> verify(io_queue& q, ...) {   // q owns the frame arena
//     io_completion c = co_await q.co_read(...);
//     ...
//     co_return ok_status;
//   }
//
// T is status or result<U>: both can carry the arena-exhausted error, which
// is what awaiting (or start()ing) an invalid task gives. No exceptions: the
// promise's unhandled_exception traps (code built with -fno-exceptions never
// reaches it). No threads: a task is resumed on the thread that runs the
// completion path of its queue.
#pragma once

#include <concepts>
#include <coroutine>
#include <cstddef>
#include <type_traits>
#include <utility>

#include "dkq/base/status.hpp"
#include "dkq/coro/arena.hpp"

// GCC 12 reports -Wmismatched-new-delete at the end of every coroutine whose
// promise has an operator new with extra parameters (the arena), although
// the frame is freed by the promise's own operator delete, which C++20
// ([dcl.fct.def.coroutine]) says is the one to call; clang does not. The
// diagnostic is located in the coroutine's own body, in the includer's code,
// so it is turned off for the rest of the translation unit, for GCC only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace dkq::coro {

inline constexpr status arena_exhausted{errc::no_memory, "coroutine frame arena exhausted (or the frame is larger than a slot)"};

template <class T>
concept task_value = std::constructible_from<T, status>;

template <task_value T = status>
class [[nodiscard]] task {
 public:
  struct promise_type {
    T value{arena_exhausted};
    std::coroutine_handle<> continuation{};

    // Frames come only from an arena named by the first parameter (for a
    // member coroutine: the object). No arena, no coroutine: the plain form
    // is deleted so such code does not compile.
    template <arena_provider A, class... Rest>
    static void* operator new(std::size_t n, A& a, Rest&&...) noexcept {
      return a.coro_frame_arena().allocate(n);
    }
    static void* operator new(std::size_t) = delete;
    static void operator delete(void* p, std::size_t) noexcept { frame_arena::deallocate(p); }
    static task get_return_object_on_allocation_failure() noexcept { return task{}; }

    task get_return_object() noexcept { return task{std::coroutine_handle<promise_type>::from_promise(*this)}; }
    std::suspend_always initial_suspend() noexcept { return {}; }
    struct final_awaiter {
      bool await_ready() const noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> h) noexcept {
        std::coroutine_handle<> next = h.promise().continuation;
        return next ? next : std::noop_coroutine();
      }
      void await_resume() const noexcept {}
    };
    final_awaiter final_suspend() noexcept { return {}; }
    template <class V>
      requires std::constructible_from<T, V&&>
    void return_value(V&& v) noexcept {
      value = T(static_cast<V&&>(v));
    }
    void unhandled_exception() noexcept { __builtin_trap(); }
  };
  using handle = std::coroutine_handle<promise_type>;

  task() noexcept = default;
  task(task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  task& operator=(task&& o) noexcept {
    if (this != &o) {
      destroy();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  ~task() { destroy(); }

  // false: the arena had no room for the frame; the task never runs.
  bool valid() const noexcept { return static_cast<bool>(h_); }
  bool done() const noexcept { return !h_ || h_.done(); }

  // Run a top-level task until its first suspension. The caller keeps the
  // task alive and turns the completion path until done().
  void start() noexcept {
    if (h_ && !h_.done()) h_.resume();
  }

  // The task's value once done (arena_exhausted if it never had a frame).
  T& value() noexcept {
    if (!h_) return invalid_value();
    return h_.promise().value;
  }

  struct awaiter {
    handle h;
    bool await_ready() const noexcept { return !h || h.done(); }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> caller) noexcept {
      h.promise().continuation = caller;
      return h;
    }
    T await_resume() noexcept {
      if (!h) return T(arena_exhausted);
      return std::move(h.promise().value);
    }
  };
  awaiter operator co_await() && noexcept { return awaiter{h_}; }
  awaiter operator co_await() & noexcept { return awaiter{h_}; }

 private:
  explicit task(handle h) noexcept : h_(h) {}
  void destroy() noexcept {
    if (h_) h_.destroy();
    h_ = {};
  }
  static T& invalid_value() noexcept {
    static T v{arena_exhausted};
    v = T(arena_exhausted);
    return v;
  }
  handle h_{};
};

}  // namespace dkq::coro
