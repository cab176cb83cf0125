// dkq/coro/arena.hpp - fixed-size storage for coroutine frames.
//
// A coroutine frame is allocated when a coroutine is called. dkq's core never
// allocates on the I/O path, so frames come from a frame_arena: a block of
// memory given (or allocated once) at setup and cut into equal slots, handed
// out and taken back in O(1) from a free list. A frame larger than a slot, or
// a call when every slot is in use, gets nullptr; the task built from it is
// invalid and awaiting it yields errc::no_memory ("coroutine frame arena
// exhausted") - a clear error, not a crash (the promise declares
// get_return_object_on_allocation_failure, so no exception is involved).
//
// Single-threaded like the queue it serves: one arena per I/O queue, used by
// the thread that owns the queue.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <new>

#include "dkq/base/config.hpp"
#include "dkq/base/status.hpp"

namespace dkq::coro {

class frame_arena {
 public:
  // Every frame starts with this header: the arena it came from, so the
  // promise's operator delete (which is given no arguments) can return it.
  static constexpr std::size_t header = 16;
  static constexpr std::size_t align = 16;

  frame_arena() noexcept = default;
  frame_arena(const frame_arena&) = delete;
  frame_arena& operator=(const frame_arena&) = delete;
  ~frame_arena() { release(); }

  // Cut `bytes` of caller storage (16-byte aligned) into slots of
  // `frame_bytes` (rounded up to 16, header included).
  status init(void* storage, std::size_t bytes, std::size_t frame_bytes) noexcept {
    release();
    if (storage == nullptr || (reinterpret_cast<std::uintptr_t>(storage) & (align - 1)) != 0)
      return {errc::invalid_argument, "frame arena storage must be 16-byte aligned"};
    frame_bytes = (frame_bytes + align - 1) & ~(align - 1);
    if (frame_bytes <= header) return {errc::invalid_argument, "frame size must exceed the 16-byte header"};
    const std::size_t n = bytes / frame_bytes;
    if (n == 0) return {errc::invalid_argument, "frame arena storage holds no frame", bytes};
    base_ = static_cast<unsigned char*>(storage);
    slot_ = frame_bytes;
    count_ = n;
    free_ = nullptr;
    for (std::size_t i = n; i-- > 0;) {
      auto* node = reinterpret_cast<free_node*>(base_ + i * slot_);
      node->next = free_;
      free_ = node;
    }
    in_use_ = high_water_ = failures_ = 0;
    return ok_status;
  }

  // Setup-time allocation of `frames` slots of `frame_bytes` each.
  status init(std::size_t frames, std::size_t frame_bytes) noexcept {
    release();
    frame_bytes = (frame_bytes + align - 1) & ~(align - 1);
    if (frames == 0 || frame_bytes <= header) return {errc::invalid_argument, "frame arena needs frames of > 16 bytes"};
    void* p = ::operator new(frames * frame_bytes, std::align_val_t{align}, std::nothrow);
    if (p == nullptr) return {errc::no_memory, "frame arena allocation failed"};
    status s = init(p, frames * frame_bytes, frame_bytes);
    owned_ = p;
    return s;
  }

  // For the promise: `n` frame bytes, or nullptr (too big, or none free).
  void* allocate(std::size_t n) noexcept {
    if (DKQ_UNLIKELY(n + header > slot_ || free_ == nullptr)) {
      ++failures_;
      return nullptr;
    }
    free_node* f = free_;
    free_ = f->next;
    if (++in_use_ > high_water_) high_water_ = in_use_;
    auto* p = reinterpret_cast<unsigned char*>(f);
    *reinterpret_cast<frame_arena**>(p) = this;
    return p + header;
  }

  static void deallocate(void* frame) noexcept {
    if (frame == nullptr) return;
    auto* p = static_cast<unsigned char*>(frame) - header;
    frame_arena* a = *reinterpret_cast<frame_arena**>(p);
    a->put(p);
  }

  // So the arena itself can be a coroutine's first parameter.
  frame_arena& coro_frame_arena() noexcept { return *this; }

  std::size_t frame_size() const noexcept { return slot_ - header; }  // largest frame that fits
  std::size_t capacity() const noexcept { return count_; }
  std::size_t in_use() const noexcept { return in_use_; }
  std::size_t high_water() const noexcept { return high_water_; }
  std::uint64_t failures() const noexcept { return failures_; }

 private:
  struct free_node {
    free_node* next;
  };
  void put(unsigned char* p) noexcept {
    auto* f = reinterpret_cast<free_node*>(p);
    f->next = free_;
    free_ = f;
    --in_use_;
  }
  void release() noexcept {
    if (owned_ != nullptr) ::operator delete(owned_, std::align_val_t{align});
    owned_ = nullptr;
    base_ = nullptr;
    free_ = nullptr;
    slot_ = count_ = 0;
  }

  unsigned char* base_ = nullptr;
  void* owned_ = nullptr;
  free_node* free_ = nullptr;
  std::size_t slot_ = 0, count_ = 0, in_use_ = 0, high_water_ = 0;
  std::uint64_t failures_ = 0;
};

// Anything that can give an arena: the arena itself, or an object that owns
// one (an I/O queue). A coroutine whose first parameter is such an object
// takes its frame from that arena.
template <class T>
concept arena_provider = requires(T& t) {
  { t.coro_frame_arena() } -> std::same_as<frame_arena&>;
};

}  // namespace dkq::coro
