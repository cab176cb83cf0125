// tests/support/fault_tally.hpp - TEST HELPER: per-test counts for the fault
// tests (faults injected, requests, completed once, lost, double, unknown),
// printed when the test program ends with a prefix ("nvme-faults:",
// "mfi-faults:") and a total; docs/device-faults.md quotes them.
//
//   DKQ_FAULT_TALLY("nvme-faults");          // once, at namespace scope
//   dkq::test::fault_tally().push_back({...}); // once per rig
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace dkq::test {

struct fault_tally_row {
  std::string test;
  std::uint64_t faults, requests, once, lost, twice, unknown;
};

inline std::vector<fault_tally_row>& fault_tally() {
  static std::vector<fault_tally_row> rows;
  return rows;
}

class print_fault_tally : public ::testing::Environment {
 public:
  explicit print_fault_tally(const char* prefix) : prefix_(prefix) {}
  void TearDown() override {
    unsigned long long f = 0, n = 0, once = 0, lost = 0, twice = 0;
    for (const fault_tally_row& r : fault_tally()) {
      std::printf("%s: %-70s faults %3llu requests %3llu once %3llu lost %llu double %llu unknown %llu\n", prefix_,
                  r.test.c_str(), static_cast<unsigned long long>(r.faults),
                  static_cast<unsigned long long>(r.requests), static_cast<unsigned long long>(r.once),
                  static_cast<unsigned long long>(r.lost), static_cast<unsigned long long>(r.twice),
                  static_cast<unsigned long long>(r.unknown));
      f += r.faults, n += r.requests, once += r.once, lost += r.lost, twice += r.twice;
    }
    std::printf("%s: total: %llu faults injected, %llu requests, %llu completed exactly once, %llu lost, %llu double\n",
                prefix_, f, n, once, lost, twice);
  }

 private:
  const char* prefix_;
};

inline std::string current_test_name() { return ::testing::UnitTest::GetInstance()->current_test_info()->name(); }

}  // namespace dkq::test

#define DKQ_FAULT_TALLY(prefix)                                      \
  [[maybe_unused]] const auto* const dkq_fault_tally_env_ =          \
      ::testing::AddGlobalTestEnvironment(new ::dkq::test::print_fault_tally(prefix))
