# Tests of common/ and compress/.
cnd_test(test_common LABEL unit LIBS cnd_common)
