# ublk VM scenarios (issue 14): the example drivers serving /dev/ublkbN to
# unmodified Debian programs, on Debian's Linux 6.12 (6.1 has no ublk_drv).
# One boot each. The Debian programs (e2fsprogs, fio) must be installed on the
# host (scripts/deps.sh); the harness packs them with their libraries.
foreach(sc ublk_fs ublk_fio ublk_kill ublk_errors)
  add_test(NAME vm_${sc}
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/scenarios/${sc}.py
            --work-dir ${CMAKE_CURRENT_BINARY_DIR}/${sc} --timeout 600
            --prog dkq_nvme=$<TARGET_FILE:vm_dkq_nvme>
            --prog dkq_scsi=$<TARGET_FILE:vm_dkq_scsi>)
  set_tests_properties(vm_${sc} PROPERTIES LABELS vm TIMEOUT 720 PROCESSORS 1
                       ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")
endforeach()
