# Tests of the audit log (coordinator/audit_*.c) and crypto/merkle.c.
cnd_test(test_merkle LABEL unit LIBS cnd_audit)
