# Tests of compress/quant*, compress/artifact* and the quantize/eval/export/bench commands.
cnd_test(test_quant LABEL unit LIBS cnd_compress)
cnd_test(test_artifact LABEL unit LIBS cnd_compress)
add_test(NAME test_quant_e2e
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_quant_e2e.sh $<TARGET_FILE:condenser>)
set_tests_properties(test_quant_e2e PROPERTIES LABELS integration TIMEOUT 600 SKIP_RETURN_CODE 77
                     ENVIRONMENT "OPENBLAS_NUM_THREADS=1")
