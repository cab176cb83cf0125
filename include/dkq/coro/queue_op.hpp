// dkq/coro/queue_op.hpp - awaiting one command on a dkq::queue_pair.
//
// For a queue pair whose per-command context is the command's completion
// sink (Ctx = coro::completion<queue_completion<Cqe>>*):
//
//   queue_command cmd(qp, &sqe);           // posts at co_await (or start())
//   queue_completion<Cqe> r = co_await cmd;
//   ...
//   // the completion path (a dispatcher's drain, or the driver's loop):
//   coro::resume_completions(qp, budget);  // one CQ head write per batch
//
// Posting follows the queue's doorbell policy: under ring_policy::batched a
// coroutine's submission is rung by the next flush point (qp.flush(), or the
// end of the next completion batch), exactly as in the callback form.
#pragma once

#include <cstdint>

#include "dkq/coro/completion.hpp"
#include "dkq/queue/queue_pair.hpp"

namespace dkq::coro {

template <class Cqe>
struct queue_completion {
  status st{};  // ok, or why the command was refused at submission
  Cqe entry{};  // the device's completion entry (when st is ok)
};

template <class QP>
class queue_command {
 public:
  using cqe_type = typename QP::cqe_type;
  using result_type = queue_completion<cqe_type>;

  queue_command(QP& qp, const void* sqe, std::uint64_t deadline = no_deadline) noexcept
      : qp_(&qp), sqe_(sqe), deadline_(deadline) {}
  queue_command(const queue_command&) = delete;
  queue_command& operator=(const queue_command&) = delete;

  completion<result_type>& sink() noexcept { return c_; }
  bool start() noexcept {
    auto cid = qp_->submit(sqe_, &c_, deadline_);
    if (DKQ_UNLIKELY(!cid)) {
      c_.refused(result_type{cid.error(), {}});
      return false;
    }
    c_.posted();
    return true;
  }
  auto operator co_await() noexcept { return op_awaiter<queue_command>{*this}; }

 private:
  QP* qp_;
  const void* sqe_;
  std::uint64_t deadline_;
  completion<result_type> c_;
};

// Reap up to `budget` completions and resume each command's waiter. Entries
// the queue pair refuses (unknown or stale identifiers) are counted in
// *protocol_errors when given.
template <class QP>
DKQ_ALWAYS_INLINE std::uint32_t resume_completions(QP& qp, std::uint32_t budget,
                                                   std::uint64_t* protocol_errors = nullptr) noexcept {
  using cqe_type = typename QP::cqe_type;
  return qp.process_completions(
      budget, [](completion<queue_completion<cqe_type>>*& c, const cqe_type& e) { c->complete_with(ok_status, e); },
      [&](status, const cqe_type&) {
        if (protocol_errors != nullptr) ++*protocol_errors;
      });
}

}  // namespace dkq::coro
