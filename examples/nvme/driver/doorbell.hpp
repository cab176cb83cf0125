// examples/nvme/driver/doorbell.hpp - the NVMe queue doorbell the driver uses:
// a register, optionally fronted by a shadow doorbell (Doorbell Buffer Config).
//
// The mode is chosen per queue at creation, at run time (the controller may
// or may not support shadow doorbells, and the user can switch them off), so
// this wraps the queue layer's mmio_doorbell and shadow_doorbell in one type
// the queue pair is instantiated with. It counts the register writes it
// really made: that is the number the device (and QEMU's trace) sees.
#pragma once

#include <cstdint>

#include "dkq/base/barrier.hpp"
#include "dkq/queue/doorbell.hpp"

namespace dkq::nvme_driver {

enum class db_mode : std::uint8_t {
  mmio,          // every write goes to the register
  shadow,        // shadow word + EventIdx check (Linux form, queue/doorbell.hpp)
  shadow_always, // shadow word kept current, and the register written every time
};

class nvme_doorbell {
 public:
  nvme_doorbell() noexcept = default;
  explicit nvme_doorbell(mmio_doorbell reg) noexcept : reg_(reg) {}

  // shadow/event_idx: this queue's words in the two Doorbell Buffer Config pages.
  void set_shadow(std::uint32_t* shadow, const std::uint32_t* event_idx, db_mode mode) noexcept {
    mode_ = shadow == nullptr ? db_mode::mmio : mode;
    shadow_word_ = shadow;
    shadow_ = shadow_doorbell<mmio_doorbell>{shadow, event_idx, reg_};
  }
  void clear_shadow() noexcept {
    mode_ = db_mode::mmio;
    shadow_word_ = nullptr;
  }

  void write(std::uint32_t v) noexcept {
    switch (mode_) {
      case db_mode::mmio:
        reg_.write(v);
        ++mmio_writes_;
        return;
      case db_mode::shadow: {
        const std::uint64_t before = shadow_.mmio_writes();
        shadow_.write(v);
        mmio_writes_ += shadow_.mmio_writes() - before;
        ++shadow_writes_;
        return;
      }
      case db_mode::shadow_always:
        // The controller reads the shadow word whenever it likes, so it must
        // never hold an older value than the register; then ring.
        dma_wmb();
        store_seq_cst(shadow_word_, v);
        reg_.write(v);
        ++mmio_writes_;
        ++shadow_writes_;
        return;
    }
  }

  db_mode mode() const noexcept { return mode_; }
  std::uint64_t mmio_writes() const noexcept { return mmio_writes_; }
  std::uint64_t shadow_writes() const noexcept { return shadow_writes_; }

 private:
  mmio_doorbell reg_{};
  shadow_doorbell<mmio_doorbell> shadow_{};
  std::uint32_t* shadow_word_ = nullptr;
  db_mode mode_ = db_mode::mmio;
  std::uint64_t mmio_writes_ = 0;
  std::uint64_t shadow_writes_ = 0;
};

static_assert(doorbell<nvme_doorbell>);

}  // namespace dkq::nvme_driver
