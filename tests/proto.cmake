# Tests of proto/: wire messages, validation, chunking, the CurveZMQ transport and ZAP.
cnd_test(test_proto LABEL unit LIBS cnd_proto TIMEOUT 60)
