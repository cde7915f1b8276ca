# Tests of the audit log (coordinator/audit_*.c) and crypto/merkle.c.
cnd_test(test_merkle LABEL unit LIBS cnd_audit)
cnd_test(test_audit_log LABEL unit LIBS cnd_audit TIMEOUT 120)
