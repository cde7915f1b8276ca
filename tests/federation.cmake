# Tests of the federation: coordinator/ (store, jobs, rounds, daemon) and agent/, the last ones as
# real processes on loopback (CND_BIN is the condenser executable).
cnd_test(test_coord_store LABEL unit LIBS cnd_coordinator cnd_agent TIMEOUT 60)
cnd_test(test_federation_dropout LABEL integration LIBS cnd_coordinator cnd_agent TIMEOUT 90)
cnd_test(test_federation_restart LABEL integration LIBS cnd_coordinator cnd_agent TIMEOUT 120)
cnd_test(test_federation_reject LABEL integration LIBS cnd_coordinator cnd_agent TIMEOUT 120)
cnd_test(test_federation_canary LABEL integration LIBS cnd_coordinator cnd_agent TIMEOUT 120)
cnd_test(test_federation_demo LABEL integration LIBS cnd_coordinator cnd_agent TIMEOUT 180)
# The commands that list or show, on a real 2-round federation: --json parses and agrees with the
# text field by field, missing numbers are null / n/a, one digest per artifact everywhere.
add_test(NAME test_cli_json COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_cli_json.sh
         $<TARGET_FILE:condenser>)
set_tests_properties(test_cli_json PROPERTIES LABELS integration TIMEOUT 180 SKIP_RETURN_CODE 77)
