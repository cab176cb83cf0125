// dkq/base/status.hpp - errors as values: status and result<T>.
//
// The core is built with -fno-exceptions (a dext cannot throw), so every
// operation that can fail says so in its return type. A status carries an error
// code and a static message that says what went wrong in words a driver author
// can act on; it never allocates.
#pragma once

#include <new>
#include <type_traits>
#include <utility>

#include "dkq/base/config.hpp"

namespace dkq {

enum class errc : std::uint16_t {
  ok = 0,
  invalid_argument,   // the caller passed something the operation cannot accept
  out_of_range,       // an index, address or length outside what is allowed
  not_initialized,    // the object was used before a successful init()
  no_space,           // a ring, queue or pool is full right now
  empty,              // nothing to take right now
  no_memory,          // setup-time allocation failed
  timeout,            // a deadline passed
  busy,               // the resource is held by someone else
  not_supported,      // the device or platform lacks the feature
  device_error,       // the device reported failure (status field, fatal bit)
  protocol_error,     // the device broke the protocol (bad id, impossible length)
  stale,              // a completion for a command that was already retired
  duplicate,          // a second completion for the same command
  io_error,           // the platform failed an operation (syscall, DriverKit call)
  constraint,         // an addressing or scatter-gather constraint cannot be met
  removed,            // the device is gone (all-ones reads)
  not_found,          // the device says the addressed target or object does not exist
};

// Name of an error code, for logs and test output.
constexpr const char* errc_name(errc e) noexcept {
  switch (e) {
    case errc::ok: return "ok";
    case errc::invalid_argument: return "invalid_argument";
    case errc::out_of_range: return "out_of_range";
    case errc::not_initialized: return "not_initialized";
    case errc::no_space: return "no_space";
    case errc::empty: return "empty";
    case errc::no_memory: return "no_memory";
    case errc::timeout: return "timeout";
    case errc::busy: return "busy";
    case errc::not_supported: return "not_supported";
    case errc::device_error: return "device_error";
    case errc::protocol_error: return "protocol_error";
    case errc::stale: return "stale";
    case errc::duplicate: return "duplicate";
    case errc::io_error: return "io_error";
    case errc::constraint: return "constraint";
    case errc::removed: return "removed";
    case errc::not_found: return "not_found";
  }
  return "unknown";
}

// An error code plus a message. The message must have static storage duration
// (a string literal); status never owns memory. `detail` is a free integer the
// failing operation may fill with the offending value (an index, a length, a
// device status code) so a log line can show it without formatting here.
class [[nodiscard]] status {
 public:
  constexpr status() noexcept = default;
  constexpr status(errc code, const char* message, std::uint64_t detail = 0) noexcept
      : code_(code), message_(message), detail_(detail) {}

  static constexpr status success() noexcept { return status{}; }

  constexpr bool ok() const noexcept { return code_ == errc::ok; }
  constexpr explicit operator bool() const noexcept { return ok(); }
  constexpr errc code() const noexcept { return code_; }
  constexpr const char* message() const noexcept { return message_ ? message_ : errc_name(code_); }
  constexpr std::uint64_t detail() const noexcept { return detail_; }

  friend constexpr bool operator==(const status& s, errc e) noexcept { return s.code_ == e; }

 private:
  errc code_ = errc::ok;
  const char* message_ = nullptr;
  std::uint64_t detail_ = 0;
};

inline constexpr status ok_status{};

// result<T>: a T or a failed status. Accessing the value of a failed result is a
// programming error; value() then traps (a dext has no exceptions to throw and
// UB is not an option), so callers check ok() first.
template <class T>
class [[nodiscard]] result {
  static_assert(!std::is_reference_v<T>, "result<T&> is not supported; use result<T*>");

 public:
  // Implicit from a value and from a failed status, so functions can `return x;`
  // or `return status{...};`.
  constexpr result(const T& v) noexcept(std::is_nothrow_copy_constructible_v<T>)
      : has_(true) {
    ::new (static_cast<void*>(&storage_)) T(v);
  }
  constexpr result(T&& v) noexcept(std::is_nothrow_move_constructible_v<T>) : has_(true) {
    ::new (static_cast<void*>(&storage_)) T(std::move(v));
  }
  constexpr result(status s) noexcept : status_(s), has_(false) {
    if (status_.ok()) status_ = status{errc::invalid_argument, "result built from a success status without a value"};
  }

  result(const result& o) noexcept(std::is_nothrow_copy_constructible_v<T>)
      : status_(o.status_), has_(o.has_) {
    if (has_) ::new (static_cast<void*>(&storage_)) T(*o.ptr());
  }
  result(result&& o) noexcept(std::is_nothrow_move_constructible_v<T>)
      : status_(o.status_), has_(o.has_) {
    if (has_) ::new (static_cast<void*>(&storage_)) T(std::move(*o.ptr()));
  }
  result& operator=(const result& o) noexcept(std::is_nothrow_copy_constructible_v<T>) {
    if (this != &o) {
      reset();
      status_ = o.status_;
      if (o.has_) ::new (static_cast<void*>(&storage_)) T(*o.ptr());
      has_ = o.has_;
    }
    return *this;
  }
  result& operator=(result&& o) noexcept(std::is_nothrow_move_constructible_v<T>) {
    if (this != &o) {
      reset();
      status_ = o.status_;
      if (o.has_) ::new (static_cast<void*>(&storage_)) T(std::move(*o.ptr()));
      has_ = o.has_;
    }
    return *this;
  }
  ~result() { reset(); }

  constexpr bool ok() const noexcept { return has_; }
  constexpr explicit operator bool() const noexcept { return has_; }
  constexpr status error() const noexcept { return status_; }

  T& value() & noexcept {
    if (DKQ_UNLIKELY(!has_)) __builtin_trap();
    return *ptr();
  }
  const T& value() const& noexcept {
    if (DKQ_UNLIKELY(!has_)) __builtin_trap();
    return *ptr();
  }
  T&& value() && noexcept {
    if (DKQ_UNLIKELY(!has_)) __builtin_trap();
    return std::move(*ptr());
  }
  T value_or(T fallback) const noexcept { return has_ ? *ptr() : fallback; }

  T* operator->() noexcept { return &value(); }
  const T* operator->() const noexcept { return &value(); }
  T& operator*() & noexcept { return value(); }
  const T& operator*() const& noexcept { return value(); }

 private:
  void reset() noexcept {
    if (has_) ptr()->~T();
    has_ = false;
  }
  T* ptr() noexcept { return std::launder(reinterpret_cast<T*>(&storage_)); }
  const T* ptr() const noexcept { return std::launder(reinterpret_cast<const T*>(&storage_)); }

  alignas(T) unsigned char storage_[sizeof(T)];
  status status_{};
  bool has_ = false;
};

// Propagate a failed status from an expression that yields status.
#define DKQ_TRY(...)                                    \
  do {                                                  \
    ::dkq::status dkq_try_status_ = (__VA_ARGS__);            \
    if (DKQ_UNLIKELY(!dkq_try_status_.ok())) return dkq_try_status_; \
  } while (0)

}  // namespace dkq
