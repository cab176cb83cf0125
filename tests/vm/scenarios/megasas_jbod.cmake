# MegaRAID in JBOD mode (QEMU megasas use_jbod=on) VM scenario: one boot, see
# megasas_jbod.py. Included by tests/vm/CMakeLists.txt (scenarios/*.cmake);
# vm_dkq_scsi is defined by megasas_driver.cmake.
add_test(NAME vm_megasas_jbod
  COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/scenarios/megasas_jbod.py
          --work-dir ${CMAKE_CURRENT_BINARY_DIR}/megasas_jbod --timeout 300
          --prog dkq_scsi=$<TARGET_FILE:vm_dkq_scsi>
          --prog jbod_errors=${CMAKE_CURRENT_SOURCE_DIR}/scenarios/megasas_jbod_errors.sh
          --prog scsi_sigterm=${CMAKE_CURRENT_SOURCE_DIR}/scenarios/megasas_sigterm.sh)
set_tests_properties(vm_megasas_jbod PROPERTIES LABELS vm TIMEOUT 420 PROCESSORS 1
                     ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")
