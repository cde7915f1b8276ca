# Tests of proto/: wire messages, validation, chunking, the CurveZMQ transport and ZAP.
cnd_test(test_proto LABEL unit LIBS cnd_proto TIMEOUT 60)
cnd_test(test_proto_chunk LABEL unit LIBS cnd_proto TIMEOUT 60)
cnd_test(test_transport LABEL integration LIBS cnd_proto TIMEOUT 30)
cnd_test(test_zap LABEL integration LIBS cnd_proto TIMEOUT 30)
