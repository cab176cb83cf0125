# MegaRAID SAS example driver VM scenario (issue 7): one boot, see megasas_driver.py.
# Included by tests/vm/CMakeLists.txt (scenarios/*.cmake).
dkq_vm_guest(dkq_scsi SOURCES ${PROJECT_SOURCE_DIR}/examples/scsi/linux/dkq_scsi.cpp)
# The kernel-driver baseline (O_DIRECT + Linux AIO on a block device) and the
# interoperability reader are the NVMe example's kbench: it is not NVMe-specific
# and reads the same pattern dkq-scsi writes.
if(EXISTS ${PROJECT_SOURCE_DIR}/examples/nvme/linux/kbench.cpp)
  dkq_vm_guest(scsi_kbench SOURCES ${PROJECT_SOURCE_DIR}/examples/nvme/linux/kbench.cpp)
  # The guest script that hands the controller to Linux's megaraid_sas is not a
  # compiled program, so this scenario registers its test itself (same shape
  # as dkq_vm_scenario()).
  add_test(NAME vm_megasas_driver
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/scenarios/megasas_driver.py
            --work-dir ${CMAKE_CURRENT_BINARY_DIR}/megasas_driver --timeout 420
            --prog dkq_scsi=$<TARGET_FILE:vm_dkq_scsi>
            --prog scsi_kbench=$<TARGET_FILE:vm_scsi_kbench>
            --prog megasas_handback=${CMAKE_CURRENT_SOURCE_DIR}/scenarios/megasas_handback.sh
            --prog dkq_pci=$<TARGET_FILE:vm_dkq_pci>)
  set_tests_properties(vm_megasas_driver PROPERTIES LABELS vm TIMEOUT 540 PROCESSORS 1
                       ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")
endif()
