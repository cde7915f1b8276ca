# Tests of common/ and compress/.
cnd_test(test_common LABEL unit LIBS cnd_common)
cnd_test(test_layers LABEL unit LIBS cnd_compress)
cnd_test(test_spec LABEL unit LIBS cnd_compress)
cnd_test(test_optim LABEL unit LIBS cnd_compress)
cnd_test(test_data LABEL unit LIBS cnd_compress ZLIB::ZLIB)
cnd_test(test_modelfile LABEL unit LIBS cnd_compress)
cnd_test(test_train LABEL unit TIMEOUT 300 LIBS cnd_compress)
cnd_test(test_distill LABEL unit LIBS cnd_compress)
cnd_test(test_pool LABEL unit LIBS cnd_common)
add_test(NAME cli_compress COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli_compress.sh)
set_tests_properties(cli_compress PROPERTIES LABELS integration TIMEOUT 300 SKIP_RETURN_CODE 77
  ENVIRONMENT "CND_BIN=$<TARGET_FILE:condenser>")
