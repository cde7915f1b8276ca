# Tests of crypto/: identities, signatures, manifests, secure aggregation, certificates.
cnd_test(test_identity LABEL unit LIBS cnd_crypto PkgConfig::ZMQ TIMEOUT 60)
cnd_test(test_crypto_manifest LABEL unit LIBS cnd_crypto TIMEOUT 60)
cnd_test(test_crypto_prim LABEL unit LIBS cnd_crypto TIMEOUT 60)
cnd_test(test_secagg LABEL unit LIBS cnd_crypto TIMEOUT 120)
cnd_test(test_secagg_encode LABEL unit LIBS cnd_crypto TIMEOUT 60)
cnd_test(test_crypto_ca LABEL unit LIBS cnd_crypto TIMEOUT 60)
