# NVMe example driver VM scenario (issue 6): one boot, see nvme_driver.py.
# Included by tests/vm/CMakeLists.txt (scenarios/*.cmake).
dkq_vm_guest(dkq_nvme SOURCES ${PROJECT_SOURCE_DIR}/examples/nvme/linux/dkq_nvme.cpp)
find_package(Threads REQUIRED)
target_link_libraries(vm_dkq_nvme PRIVATE Threads::Threads)
dkq_vm_guest(nvme_kbench SOURCES ${PROJECT_SOURCE_DIR}/examples/nvme/linux/kbench.cpp)
# The guest script that hands the controller to Linux's nvme driver is not a
# compiled program, so this scenario registers its test itself (same shape as
# dkq_vm_scenario()).
foreach(sc nvme_driver nvme_interop)
  add_test(NAME vm_${sc}
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/scenarios/${sc}.py
            --work-dir ${CMAKE_CURRENT_BINARY_DIR}/${sc} --timeout 400
            --prog dkq_nvme=$<TARGET_FILE:vm_dkq_nvme>
            --prog nvme_kbench=$<TARGET_FILE:vm_nvme_kbench>
            --prog nvme_handback=${CMAKE_CURRENT_SOURCE_DIR}/scenarios/nvme_handback.sh
            --prog nvme_sigterm=${CMAKE_CURRENT_SOURCE_DIR}/scenarios/nvme_sigterm.sh
            --prog nvme_errors=${CMAKE_CURRENT_SOURCE_DIR}/scenarios/nvme_errors.sh
            --prog nvme_timeout=${CMAKE_CURRENT_SOURCE_DIR}/scenarios/nvme_timeout.sh
            --prog dkq_pci=$<TARGET_FILE:vm_dkq_pci>)
  set_tests_properties(vm_${sc} PROPERTIES LABELS vm TIMEOUT 520 PROCESSORS 1
                       ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")
endforeach()
