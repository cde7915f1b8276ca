# Tests of the edge side (deploy/edge*, fleet_sim) and the rollout engine (coordinator/rollout*,
# fleet_registry). Device counts shrink under sanitizers (CND_SANITIZE) to stay fast.
add_executable(fleet_mkart fleet_mkart.c)
target_link_libraries(fleet_mkart PRIVATE cnd_compress)
target_include_directories(fleet_mkart PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
cnd_target_options(fleet_mkart)
cnd_test(test_edge LABEL unit LIBS cnd_deploy cnd_compress TIMEOUT 60)
cnd_test(test_rollout_plan LABEL unit LIBS cnd_rollout cnd_compress TIMEOUT 60)
cnd_test(test_rollout_engine LABEL unit LIBS cnd_rollout cnd_compress TIMEOUT 60)
# Real sockets: the device-serving coordinator in a thread and 200 simulated devices (100 under
# AddressSanitizer) on loopback: a healthy rollout, a 20%-faulty one that aborts and rolls back,
# and a coordinator restart in the middle of a rollout. test_rollout_1000 runs the same with
# 1000 devices (about 90 s on a busy 2-core machine: label slow).
cnd_test(test_rollout LABEL integration LIBS cnd_deploy cnd_rollout cnd_compress TIMEOUT 180)
# Not under sanitizers (scripts/test, CI): 1000 devices there would take minutes.
if(NOT CND_SANITIZE)
  add_test(NAME test_rollout_1000 COMMAND test_rollout)
  set_tests_properties(test_rollout_1000 PROPERTIES LABELS slow TIMEOUT 600
                       ENVIRONMENT "CND_FLEET_TEST_DEVICES=1000;OPENBLAS_NUM_THREADS=1")
endif()
# The edge daemon and rollout commands as processes: a download killed mid-way resumes, the
# rollout completes, an operator rollback returns both devices to v1. Needs sqlite3 and python3.
add_test(NAME test_edge_cli
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_edge_cli.sh $<TARGET_FILE:condenser>
                 $<TARGET_FILE:fleet_mkart>)
set_tests_properties(test_edge_cli PROPERTIES LABELS integration TIMEOUT 180 SKIP_RETURN_CODE 77)
