# Tests of deploy/runtime (the integer-only edge runtime).
cnd_test(test_runtime_sha256 LABEL unit LIBS cnd_runtime cnd_common)
cnd_test(test_runtime_requant LABEL unit LIBS cnd_runtime cnd_compress)
cnd_test(test_runtime_kernels LABEL unit LIBS cnd_runtime cnd_compress)
