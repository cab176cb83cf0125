// dkq/nvme/status.hpp - NVMe completion status decoded to names and to dkq errors.
//
// Names follow the specification's wording (Base 2.0, Figures 101-104 and the
// NVM Command Set 1.0 Figure 56), so a log line can be searched in the spec.
#pragma once

#include <cstdint>

#include "dkq/base/status.hpp"
#include "dkq/nvme/spec.hpp"

namespace dkq::nvme {

constexpr const char* generic_status_name(std::uint8_t sc) noexcept {
  switch (sc) {
    case 0x00: return "Successful Completion";
    case 0x01: return "Invalid Command Opcode";
    case 0x02: return "Invalid Field in Command";
    case 0x03: return "Command ID Conflict";
    case 0x04: return "Data Transfer Error";
    case 0x05: return "Commands Aborted due to Power Loss Notification";
    case 0x06: return "Internal Error";
    case 0x07: return "Command Abort Requested";
    case 0x08: return "Command Aborted due to SQ Deletion";
    case 0x09: return "Command Aborted due to Failed Fused Command";
    case 0x0a: return "Command Aborted due to Missing Fused Command";
    case 0x0b: return "Invalid Namespace or Format";
    case 0x0c: return "Command Sequence Error";
    case 0x0d: return "Invalid SGL Segment Descriptor";
    case 0x0e: return "Invalid Number of SGL Descriptors";
    case 0x0f: return "Data SGL Length Invalid";
    case 0x10: return "Metadata SGL Length Invalid";
    case 0x11: return "SGL Descriptor Type Invalid";
    case 0x12: return "Invalid Use of Controller Memory Buffer";
    case 0x13: return "PRP Offset Invalid";
    case 0x14: return "Atomic Write Unit Exceeded";
    case 0x15: return "Operation Denied";
    case 0x16: return "SGL Offset Invalid";
    case 0x18: return "Host Identifier Inconsistent Format";
    case 0x19: return "Keep Alive Timer Expired";
    case 0x1a: return "Keep Alive Timeout Invalid";
    case 0x1b: return "Command Aborted due to Preempt and Abort";
    case 0x1c: return "Sanitize Failed";
    case 0x1d: return "Sanitize In Progress";
    case 0x1e: return "SGL Data Block Granularity Invalid";
    case 0x1f: return "Command Not Supported for Queue in CMB";
    case 0x20: return "Namespace is Write Protected";
    case 0x21: return "Command Interrupted";
    case 0x22: return "Transient Transport Error";
    case 0x80: return "LBA Out of Range";
    case 0x81: return "Capacity Exceeded";
    case 0x82: return "Namespace Not Ready";
    case 0x83: return "Reservation Conflict";
    case 0x84: return "Format In Progress";
    default: return "Unknown Generic Status";
  }
}

constexpr const char* command_specific_status_name(std::uint8_t sc) noexcept {
  switch (sc) {
    case 0x00: return "Completion Queue Invalid";
    case 0x01: return "Invalid Queue Identifier";
    case 0x02: return "Invalid Queue Size";
    case 0x03: return "Abort Command Limit Exceeded";
    case 0x05: return "Asynchronous Event Request Limit Exceeded";
    case 0x06: return "Invalid Firmware Slot";
    case 0x07: return "Invalid Firmware Image";
    case 0x08: return "Invalid Interrupt Vector";
    case 0x09: return "Invalid Log Page";
    case 0x0a: return "Invalid Format";
    case 0x0b: return "Firmware Activation Requires Conventional Reset";
    case 0x0c: return "Invalid Queue Deletion";
    case 0x0d: return "Feature Identifier Not Saveable";
    case 0x0e: return "Feature Not Changeable";
    case 0x0f: return "Feature Not Namespace Specific";
    case 0x80: return "Conflicting Attributes";
    case 0x81: return "Invalid Protection Information";
    case 0x82: return "Attempted Write to Read Only Range";
    default: return "Unknown Command Specific Status";
  }
}

constexpr const char* media_status_name(std::uint8_t sc) noexcept {
  switch (sc) {
    case 0x80: return "Write Fault";
    case 0x81: return "Unrecovered Read Error";
    case 0x82: return "End-to-end Guard Check Error";
    case 0x83: return "End-to-end Application Tag Check Error";
    case 0x84: return "End-to-end Reference Tag Check Error";
    case 0x85: return "Compare Failure";
    case 0x86: return "Access Denied";
    case 0x87: return "Deallocated or Unwritten Logical Block";
    default: return "Unknown Media and Data Integrity Error";
  }
}

constexpr const char* path_status_name(std::uint8_t sc) noexcept {
  switch (sc) {
    case 0x00: return "Internal Path Error";
    case 0x01: return "Asymmetric Access Persistent Loss";
    case 0x02: return "Asymmetric Access Inaccessible";
    case 0x03: return "Asymmetric Access Transition";
    case 0x60: return "Controller Pathing Error";
    case 0x70: return "Host Pathing Error";
    case 0x71: return "Command Aborted By Host";
    default: return "Unknown Path Related Status";
  }
}

// Name of a completion status, e.g. "LBA Out of Range".
constexpr const char* status_name(status_field s) noexcept {
  switch (s.sct) {
    case sct::generic: return generic_status_name(s.sc);
    case sct::command_specific: return command_specific_status_name(s.sc);
    case sct::media: return media_status_name(s.sc);
    case sct::path: return path_status_name(s.sc);
    case sct::vendor: return "Vendor Specific Status";
    default: return "Reserved Status Code Type";
  }
}

// A failed completion as a dkq status: the message is the spec's name and the
// detail holds (SCT << 8) | SC so callers can still switch on the exact code.
constexpr status to_status(status_field s) noexcept {
  if (s.success()) return ok_status;
  const std::uint64_t detail = (std::uint64_t{s.sct} << 8) | s.sc;
  errc e = errc::device_error;
  if (s.sct == sct::generic) {
    switch (s.sc) {
      case 0x01: case 0x02: case 0x0b: e = errc::invalid_argument; break;
      case 0x80: case 0x81: e = errc::out_of_range; break;
      case 0x07: case 0x08: e = errc::timeout; break;  // aborted on our request
      case 0x0d: case 0x0e: case 0x0f: case 0x11: case 0x13: case 0x16:
        e = errc::protocol_error; break;              // we built a bad descriptor
      default: break;
    }
  } else if (s.sct == sct::command_specific && s.sc <= 0x02) {
    e = errc::invalid_argument;
  } else if (s.sct == sct::media) {
    e = errc::io_error;
  }
  return status{e, status_name(s), detail};
}

constexpr status to_status(const cqe& c) noexcept { return to_status(status_field::decode(c.status)); }

}  // namespace dkq::nvme
