// dkq/coro/completion.hpp - awaiting operations: one, all of several, the
// first of several, and a deadline.
//
// An operation (a device command, a timer) is an object with
//   completion<R>& sink()   where its result lands
//   bool start()            post it; false: refused now, sink() already holds
//                           the error and is done
// and it is awaited with `co_await op` (starts it if it was not started, then
// suspends until the completion path calls sink().complete(r)). The
// completion path is the one the callback form uses - a queue's poll() inside
// a dispatcher's polled, interrupt or hybrid loop - so a coroutine costs what
// a callback costs: its result is stored and its frame resumed, in place of
// calling a handler.
//
//   co_await op                        one operation; gives its R
//   co_await when_all(a, b, ...)       every one; gives std::array<R, N>
//   co_await when_all(span_of_ops)     every one (results stay in the ops)
//   co_await when_any(a, b, ...)       the first to finish; gives its index.
//                                      The others stay in flight: await them
//                                      (or let their deadline / reset end
//                                      them) before they go out of scope.
//   deadline d = timers.after(ns)      an operation that completes with
//                                      errc::timeout when the time passes;
//                                      when_any(cmd, d) bounds a wait
//
// Every completion resumes its waiter exactly once. A command awaited by a
// coroutine that times out is ended by the core's timeout -> abort -> reset
// path like any other, which completes it once with the timeout status; a
// reset completes each command it ends once. An operation destroyed while
// still in flight would leave the device writing into freed memory: that
// traps at once instead.
#pragma once

#include <array>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <new>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>

#include "dkq/base/config.hpp"
#include "dkq/base/status.hpp"

namespace dkq::coro {

class join_group;

// Where one operation's result lands, and who is waiting for it.
template <class R>
class completion {
  static_assert(std::is_trivially_copyable_v<R> && std::is_trivially_destructible_v<R>,
                "a completion's result is a plain value (it is written on the completion path)");

 public:
  enum class state : std::uint8_t { idle, pending, done };

  completion() noexcept = default;
  completion(const completion&) = delete;
  completion& operator=(const completion&) = delete;
  ~completion() {
    if (DKQ_UNLIKELY(state_ == state::pending)) __builtin_trap();  // in flight: the device may still write here
  }

  bool idle() const noexcept { return state_ == state::idle; }
  bool pending() const noexcept { return state_ == state::pending; }
  bool done() const noexcept { return state_ == state::done; }
  // The result; meaningful once done().
  const R& value() const noexcept { return *std::launder(reinterpret_cast<const R*>(storage_)); }
  R& value() noexcept { return *std::launder(reinterpret_cast<R*>(storage_)); }

  // For the operation: posted, now in flight / refused at once.
  void posted() noexcept { state_ = state::pending; }
  void refused(const R& r) noexcept {
    ::new (static_cast<void*>(storage_)) R(r);
    state_ = state::done;
  }
  // Back to idle after its result was taken, to post the operation again.
  void rearm() noexcept {
    if (state_ == state::done) state_ = state::idle;
    waiter_ = {};
    group_ = nullptr;
  }

  // The waiter: one coroutine, or a group (when_all / when_any) at `index`.
  void wait(std::coroutine_handle<> h) noexcept {
    waiter_ = h;
    group_ = nullptr;
  }
  void join(join_group* g, std::uint32_t index) noexcept {
    group_ = g;
    index_ = index;
    waiter_ = {};
  }
  void leave() noexcept {
    group_ = nullptr;
    waiter_ = {};
  }

  // The completion path: store, then resume the waiter (or tell the group).
  // complete_with builds the result in place from its parts.
  inline void complete(const R& r) noexcept;
  template <class... A>
  DKQ_ALWAYS_INLINE void complete_with(A&&... parts) noexcept {
    ::new (static_cast<void*>(storage_)) R{static_cast<A&&>(parts)...};
    finish();
  }

 private:
  inline void finish() noexcept;
  // Not initialised until the operation ends: a command's sink is built
  // for every command, and zeroing its result each time is wasted stores.
  alignas(R) unsigned char storage_[sizeof(R)];
  std::coroutine_handle<> waiter_{};
  join_group* group_ = nullptr;
  std::uint32_t index_ = 0;
  state state_ = state::idle;
};

// when_all / when_any bookkeeping; lives in the awaiter, inside the frame of
// the coroutine that waits.
class join_group {
 public:
  join_group(std::uint32_t count, bool any) noexcept : remaining_(count), any_(any) {}
  void arrive(std::uint32_t index) noexcept {
    if (first_ < 0) first_ = static_cast<std::int32_t>(index);
    --remaining_;
    if (waiter_ && !resumed_ && (any_ || remaining_ == 0)) {
      resumed_ = true;
      waiter_.resume();
    }
  }
  void refused(std::uint32_t index) noexcept {  // an operation that ended at start()
    if (first_ < 0) first_ = static_cast<std::int32_t>(index);
    --remaining_;
  }
  bool satisfied() const noexcept { return any_ ? first_ >= 0 : remaining_ == 0; }
  void wait(std::coroutine_handle<> h) noexcept { waiter_ = h; }
  std::int32_t first() const noexcept { return first_; }

 private:
  std::uint32_t remaining_;
  bool any_;
  bool resumed_ = false;
  std::int32_t first_ = -1;
  std::coroutine_handle<> waiter_{};
};

template <class R>
inline void completion<R>::complete(const R& r) noexcept {
  ::new (static_cast<void*>(storage_)) R(r);
  finish();
}

template <class R>
inline void completion<R>::finish() noexcept {
  state_ = state::done;
  if (group_ != nullptr) {
    join_group* g = group_;
    group_ = nullptr;
    g->arrive(index_);
  } else if (waiter_) {
    std::coroutine_handle<> h = waiter_;
    waiter_ = {};
    h.resume();
  }
}

template <class Op>
concept operation = requires(Op& op) {
  op.sink();
  { op.start() } -> std::same_as<bool>;
};

template <operation Op>
using result_of = std::remove_cvref_t<decltype(std::declval<Op&>().sink().value())>;

// co_await op: start if idle, wait if in flight, give the result.
template <operation Op>
struct op_awaiter {
  Op& op;
  bool await_ready() const noexcept { return op.sink().done(); }
  bool await_suspend(std::coroutine_handle<> h) noexcept {
    op.sink().wait(h);
    if (op.sink().idle() && !op.start()) return false;  // refused: value already set
    return true;
  }
  result_of<Op> await_resume() noexcept { return op.sink().value(); }
};

namespace detail {
template <class Op>
bool join_one(Op& op, join_group& g, std::uint32_t i) noexcept {
  auto& s = op.sink();
  if (s.done()) {
    g.refused(i);
    return false;
  }
  s.join(&g, i);
  if (s.idle() && !op.start()) {
    s.leave();
    g.refused(i);
    return false;
  }
  return true;
}
}  // namespace detail

// Every operation of a fixed set; gives their results in order.
template <operation... Ops>
class all_awaiter {
  using R = result_of<std::tuple_element_t<0, std::tuple<Ops...>>>;
  static_assert((std::is_same_v<R, result_of<Ops>> && ...), "when_all(a, b, ...) needs one result type");

 public:
  explicit all_awaiter(Ops&... ops) noexcept : ops_{&ops...}, g_(sizeof...(Ops), false) {}
  bool await_ready() noexcept {
    std::uint32_t i = 0;
    std::apply([&](auto*... op) { (detail::join_one(*op, g_, i++), ...); }, ops_);
    return g_.satisfied();
  }
  void await_suspend(std::coroutine_handle<> h) noexcept { g_.wait(h); }
  std::array<R, sizeof...(Ops)> await_resume() noexcept {
    return std::apply([](auto*... op) { return std::array<R, sizeof...(Ops)>{op->sink().value()...}; }, ops_);
  }

 private:
  std::tuple<Ops*...> ops_;
  join_group g_;
};

// Every operation of a run-time set (an array in the coroutine's frame).
template <operation Op>
class all_span_awaiter {
 public:
  explicit all_span_awaiter(std::span<Op> ops) noexcept
      : ops_(ops), g_(static_cast<std::uint32_t>(ops.size()), false) {}
  bool await_ready() noexcept {
    for (std::uint32_t i = 0; i < ops_.size(); ++i) detail::join_one(ops_[i], g_, i);
    return g_.satisfied();
  }
  void await_suspend(std::coroutine_handle<> h) noexcept { g_.wait(h); }
  void await_resume() noexcept {}

 private:
  std::span<Op> ops_;
  join_group g_;
};

// The first of several to finish; gives its index. The others keep running
// and are detached from this wait (await them later).
template <operation... Ops>
class any_awaiter {
 public:
  explicit any_awaiter(Ops&... ops) noexcept : ops_{&ops...}, g_(sizeof...(Ops), true) {}
  bool await_ready() noexcept {
    std::uint32_t i = 0;
    bool ready = false;
    std::apply(
        [&](auto*... op) {
          // Stop starting operations once one has ended at start().
          ((ready = ready || !detail::join_one(*op, g_, i), ++i), ...);
        },
        ops_);
    if (g_.satisfied()) {
      detach();
      return true;
    }
    return false;
  }
  void await_suspend(std::coroutine_handle<> h) noexcept { g_.wait(h); }
  std::size_t await_resume() noexcept {
    detach();
    return static_cast<std::size_t>(g_.first());
  }

 private:
  void detach() noexcept {
    std::apply([](auto*... op) { ((op->sink().pending() ? op->sink().leave() : void()), ...); }, ops_);
  }
  std::tuple<Ops*...> ops_;
  join_group g_;
};

template <operation... Ops>
all_awaiter<Ops...> when_all(Ops&... ops) noexcept {
  return all_awaiter<Ops...>(ops...);
}
template <operation... Ops>
all_awaiter<Ops...> when_all(Ops&&... ops) noexcept {  // temporaries live to the end of the co_await
  return all_awaiter<Ops...>(ops...);
}
template <operation Op>
all_span_awaiter<Op> when_all(std::span<Op> ops) noexcept {
  return all_span_awaiter<Op>(ops);
}
template <operation... Ops>
any_awaiter<Ops...> when_any(Ops&... ops) noexcept {
  return any_awaiter<Ops...>(ops...);
}

// ---- deadlines -------------------------------------------------------------------

class timer_queue;

// An operation that completes with errc::timeout at `when` (the clock the
// driver loop passes to timer_queue::fire). Destroyed before it fires, it
// leaves the queue; it never traps.
class deadline {
 public:
  deadline() noexcept = default;
  deadline(timer_queue& q, std::uint64_t when) noexcept : q_(&q), when_(when) {}
  deadline(deadline&& o) noexcept;
  deadline& operator=(deadline&&) = delete;
  deadline(const deadline&) = delete;
  ~deadline();

  completion<status>& sink() noexcept { return c_; }
  inline bool start() noexcept;
  std::uint64_t when() const noexcept { return when_; }
  auto operator co_await() noexcept { return op_awaiter<deadline>{*this}; }

 private:
  friend class timer_queue;
  void fire() noexcept { c_.complete(status{errc::timeout, "deadline passed"}); }
  void cancel_pending() noexcept;

  timer_queue* q_ = nullptr;
  std::uint64_t when_ = 0;
  completion<status> c_;
};

// Deadlines waiting to fire: a fixed array given at setup, scanned by the
// driver loop (fire(now)) each time it turns.
class timer_queue {
 public:
  status init(std::span<deadline*> storage) noexcept {
    slots_ = storage;
    for (auto& s : slots_) s = nullptr;
    count_ = 0;
    return slots_.empty() ? status{errc::invalid_argument, "timer queue without storage"} : ok_status;
  }
  deadline after(std::uint64_t now, std::uint64_t ns) noexcept { return deadline(*this, now + ns); }
  deadline at(std::uint64_t when) noexcept { return deadline(*this, when); }

  // Completes every deadline at or before `now`; returns how many.
  std::uint32_t fire(std::uint64_t now) noexcept {
    std::uint32_t n = 0;
    for (std::size_t i = 0; i < count_;) {
      deadline* d = slots_[i];
      if (d->when_ <= now) {
        slots_[i] = slots_[--count_];
        slots_[count_] = nullptr;
        d->fire();  // may resume a coroutine that adds or removes deadlines
        ++n;
        i = 0;      // the set may have changed; rescan (it is small)
        continue;
      }
      ++i;
    }
    return n;
  }
  std::size_t armed() const noexcept { return count_; }

 private:
  friend class deadline;
  bool add(deadline* d) noexcept {
    if (count_ == slots_.size()) return false;
    slots_[count_++] = d;
    return true;
  }
  void remove(deadline* d) noexcept {
    for (std::size_t i = 0; i < count_; ++i)
      if (slots_[i] == d) {
        slots_[i] = slots_[--count_];
        slots_[count_] = nullptr;
        return;
      }
  }

  std::span<deadline*> slots_{};
  std::size_t count_ = 0;
};

inline bool deadline::start() noexcept {
  if (q_ == nullptr || !q_->add(this)) {
    c_.refused(status{errc::no_space, "timer queue is full"});
    return false;
  }
  c_.posted();
  return true;
}
inline void deadline::cancel_pending() noexcept {
  if (c_.pending()) {
    q_->remove(this);
    c_.refused(status{errc::timeout, "deadline cancelled"});
  }
}
inline deadline::deadline(deadline&& o) noexcept : q_(o.q_), when_(o.when_) {
  // Only an unstarted deadline moves (returned from after()/at()).
  if (DKQ_UNLIKELY(!o.c_.idle())) __builtin_trap();
}
inline deadline::~deadline() { cancel_pending(); }

}  // namespace dkq::coro
