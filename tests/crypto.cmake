# Tests of crypto/: identities, signatures, manifests, secure aggregation, certificates.
cnd_test(test_identity LABEL unit LIBS cnd_crypto PkgConfig::ZMQ TIMEOUT 60)
