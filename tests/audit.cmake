# Tests of the audit log (coordinator/audit_*.c) and crypto/merkle.c.
cnd_test(test_merkle LABEL unit LIBS cnd_audit)
cnd_test(test_audit_log LABEL unit LIBS cnd_audit TIMEOUT 120)
cnd_test(test_audit_tools LABEL integration LIBS cnd_audit TIMEOUT 180)
# Opens the HTML report in headless Chromium; exits 77 (skipped) when chromium is absent.
cnd_test(test_audit_report LABEL integration LIBS cnd_audit TIMEOUT 240)
set_tests_properties(test_audit_report PROPERTIES SKIP_RETURN_CODE 77)
