# Tests of the audit log (coordinator/audit_*.c) and crypto/merkle.c.
cnd_test(test_merkle LABEL unit LIBS cnd_audit)
cnd_test(test_audit_log LABEL unit LIBS cnd_audit TIMEOUT 120)
cnd_test(test_audit_tools LABEL integration LIBS cnd_audit TIMEOUT 180)
# Opens the HTML report in headless Chromium; exits 77 (skipped) when chromium is absent.
cnd_test(test_audit_report LABEL integration LIBS cnd_audit TIMEOUT 240)
set_tests_properties(test_audit_report PROPERTIES SKIP_RETURN_CODE 77)
# Runs docs/auditor-guide.md's independent recipe (sqlite3, sha256sum, python3, openssl);
# exits 77 (skipped) when one of them is absent.
cnd_test(test_audit_recipe LABEL integration LIBS cnd_audit TIMEOUT 120)
set_tests_properties(test_audit_recipe PROPERTIES SKIP_RETURN_CODE 77)
# Benchmark behind docs/benchmarks.md's audit section (built, not run by ctest).
add_executable(bench_audit bench_audit.c)
target_link_libraries(bench_audit PRIVATE cnd_audit)
target_include_directories(bench_audit PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
cnd_target_options(bench_audit)
# The auditor's commands on a coordinator made by real processes, checked by independent Python
# (hashlib, json, sqlite3): signed-note key IDs. Exits 77 (skipped) when python3 is missing.
add_test(NAME test_audit_cli
         COMMAND sh -c "command -v python3 > /dev/null || exit 77; exec python3 \"$0\" \"$1\""
                 ${CMAKE_CURRENT_SOURCE_DIR}/test_audit_cli.py $<TARGET_FILE:condenser>)
set_tests_properties(test_audit_cli PROPERTIES LABELS integration TIMEOUT 120 SKIP_RETURN_CODE 77)
