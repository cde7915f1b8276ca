# Tests of deploy/runtime (the integer-only edge runtime).
cnd_test(test_runtime_sha256 LABEL unit LIBS cnd_runtime cnd_common)
cnd_test(test_runtime_requant LABEL unit LIBS cnd_runtime cnd_compress)
cnd_test(test_runtime_kernels LABEL unit LIBS cnd_runtime cnd_compress)
cnd_test(test_runtime_fuzz LABEL fuzz LIBS cnd_runtime cnd_compress)

# Cross-platform checks: random artifacts from runtime_mkart, the runtime rebuilt for ARM.
add_executable(runtime_mkart runtime_mkart.c)
target_link_libraries(runtime_mkart PRIVATE cnd_compress)
target_include_directories(runtime_mkart PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
cnd_target_options(runtime_mkart)
add_test(NAME test_runtime_cross
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_runtime_cross.sh ${CMAKE_SOURCE_DIR}
                 $<TARGET_FILE:runtime_mkart>)
add_test(NAME test_runtime_m4
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_runtime_m4.sh ${CMAKE_SOURCE_DIR}
                 $<TARGET_FILE:condenser> $<TARGET_FILE:runtime_mkart>)
set_tests_properties(test_runtime_cross test_runtime_m4 PROPERTIES LABELS integration
                     TIMEOUT 300 SKIP_RETURN_CODE 77)
