// dkq/scsi/command.hpp - one SCSI command end to end, over any transport.
//
// Every SCSI HBA driver turns the same three things into one answer: the
// transport's own status (did the command reach the target and come back:
// MFI frame status, PVSCSI hostStatus, an SRB status), the SAM status byte
// the target returned, and - for CHECK CONDITION - the sense data. And every
// one retries the same few cases: a UNIT ATTENTION (the target reports a
// reset, a media change or a parameter change once, on the next command: SPC-5
// 5.14; Linux scsi_check_sense returns ADD_TO_MLQUEUE for most of them), BUSY
// and TASK SET FULL (SAM-5 5.3.1), and NOT READY "becoming ready" (asc/ascq
// 04h/01h). This header does both, independent of the transport:
//
//   scsi::classify(transport, status_byte, sense_bytes)  -> scsi::outcome
//   scsi::run_command(issue, policy)                      -> scsi::outcome
//
// `issue()` is the transport: it sends the command once and returns a
// scsi::raw_result. Sense bytes come from the device and are untrusted:
// their length is bounded by the caller's buffer and they are parsed with
// the bounds in sense.hpp; a CHECK CONDITION without parseable sense is an
// error, never success. Retries are bounded; every attempt is counted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "dkq/base/status.hpp"
#include "dkq/scsi/cdb.hpp"
#include "dkq/scsi/sense.hpp"

namespace dkq::scsi {

// What one attempt brought back, as the transport reports it.
struct raw_result {
  status transport{};               // not ok: the command did not complete at the target
  std::uint8_t status_byte = 0;     // SAM status (meaningful when transport is ok)
  std::span<const std::uint8_t> sense{};  // sense bytes the device stored (may be empty)
};

// The classified answer.
struct outcome {
  status st{};                  // ok, or why not (errc from the sense, the status byte or the transport)
  std::uint8_t status_byte = 0;
  bool sense_valid = false;
  sense_data sense{};
  std::uint32_t attempts = 0;   // attempts made (run_command)
  bool unit_attention_seen = false;
};

// Transport status, SAM status byte and (already parsed) sense into one
// answer. For transports that parse sense themselves (MFI auto-sense).
inline outcome classify_parsed(status transport, std::uint8_t status_byte, bool sense_valid,
                               const sense_data& sense) noexcept {
  outcome o;
  o.status_byte = status_byte;
  if (!transport.ok()) {
    o.st = transport;
    return o;
  }
  switch (status_byte) {
    case scsi_status::good:
    case scsi_status::condition_met:
      o.st = ok_status;
      return o;
    case scsi_status::check_condition: {
      if (sense_valid) {
        o.sense_valid = true;
        o.sense = sense;
        o.unit_attention_seen = sense.key == sense_key::unit_attention;
        const status s = to_status(sense);
        // RECOVERED ERROR / NO SENSE: the command did its work.
        o.st = s.ok() ? ok_status : s;
        return o;
      }
      o.st = {errc::device_error, "CHECK CONDITION without usable sense data", status_byte};
      return o;
    }
    case scsi_status::busy:
    case scsi_status::task_set_full:
      o.st = {errc::busy, status_name(status_byte), status_byte};
      return o;
    default:
      o.st = {errc::device_error, status_name(status_byte), status_byte};
      return o;
  }
}

// The same from the raw sense bytes the device stored (bounded by the span).
inline outcome classify(const raw_result& r) noexcept {
  sense_data sd{};
  bool valid = false;
  if (r.transport.ok() && r.status_byte == scsi_status::check_condition && !r.sense.empty()) {
    auto p = parse_sense(r.sense.data(), r.sense.size());
    if (p) {
      sd = *p;
      valid = true;
    }
  }
  return classify_parsed(r.transport, r.status_byte, valid, sd);
}

struct retry_policy {
  std::uint32_t unit_attention = 3;  // UNIT ATTENTION: retry at once
  std::uint32_t busy = 3;            // BUSY / TASK SET FULL: the caller's issue() may wait first
  std::uint32_t becoming_ready = 3;  // NOT READY, 04h/01h
};

// Should this outcome be sent again, given what was already retried?
struct retry_state {
  std::uint32_t unit_attention = 0, busy = 0, becoming_ready = 0;
};
inline bool should_retry(const outcome& o, const retry_policy& p, retry_state& used) noexcept {
  if (o.st.ok()) return false;
  if (o.sense_valid && o.sense.key == sense_key::unit_attention && !o.sense.deferred)
    return used.unit_attention++ < p.unit_attention;
  if (o.sense_valid && o.sense.key == sense_key::not_ready && o.sense.asc == 0x04 && o.sense.ascq == 0x01)
    return used.becoming_ready++ < p.becoming_ready;
  if (!o.sense_valid && (o.status_byte == scsi_status::busy || o.status_byte == scsi_status::task_set_full) &&
      o.st.code() == errc::busy)
    return used.busy++ < p.busy;
  return false;
}

// Send one command until it has an answer that is not retried: `issue()` is
// called once per attempt and returns a raw_result (it must be synchronous:
// the sense span must stay valid until it returns to this function's next
// statement). The outcome carries the last attempt's answer and the count.
template <class Issue>
outcome run_command(Issue&& issue, const retry_policy& p = {}) noexcept {
  retry_state used;
  bool ua = false;
  for (std::uint32_t attempt = 1;; ++attempt) {
    outcome o = classify(issue());
    o.attempts = attempt;
    ua |= o.unit_attention_seen;
    o.unit_attention_seen = ua;
    if (!should_retry(o, p, used)) return o;
  }
}

}  // namespace dkq::scsi
