# Fuzz targets for every parser of untrusted bytes (tests/fuzz/, docs/fuzzing.md).
#
# Each target is one tests/fuzz/fuzz_<name>.c defining LLVMFuzzerTestOneInput. It is built twice:
#   fuzz_replay_<name>  with the project's compiler and sanitizers, linked with replay.c; ctest
#                       runs it over the committed seed corpus (fuzz/corpus/<name>/) and every
#                       input that once crashed or hung (fuzz/regress/<name>/, which holds a
#                       .gitkeep until it has one), label `fuzz`.
#   fuzz_<name>         the libFuzzer binary, only with -DCND_FUZZ=ON (clang):
#                         CC=clang cmake -S . -B build-fuzz -DCND_FUZZ=ON
# With CND_FUZZ=ON every library is compiled with coverage instrumentation, ASan and UBSan too,
# so the fuzzer sees and checks the product's code, not only the target's.
set(CND_FUZZ_DIR ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)
# Under ASan the replays refuse any single allocation over 512 MiB, as libFuzzer's malloc limit
# would: an input that makes a parser allocate far beyond its own size fails the test.
set(CND_FUZZ_ASAN "detect_leaks=1:abort_on_error=1:max_allocation_size_mb=512")
option(CND_FUZZ "Build the libFuzzer targets (needs clang)" OFF)
if(CND_FUZZ AND NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "CND_FUZZ=ON needs clang: CC=clang cmake -S . -B build-fuzz -DCND_FUZZ=ON")
endif()

if(CND_FUZZ)
  # -UNDEBUG: assertions (programming errors) stay on whatever the build type.
  set(CND_FUZZ_FLAGS -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                     -fno-omit-frame-pointer -g -UNDEBUG)
  foreach(lib cnd_common cnd_runtime cnd_compress cnd_crypto cnd_proto cnd_audit cnd_agent_store
              cnd_agent cnd_coordinator cnd_rollout cnd_deploy)
    target_compile_options(${lib} PRIVATE ${CND_FUZZ_FLAGS})
    target_link_options(${lib} INTERFACE -fsanitize=address,undefined)
  endforeach()
endif()

# cnd_fuzz_target(NAME LIBS lib...): registers fuzz_replay_NAME (ctest) and, with CND_FUZZ,
# fuzz_NAME. SOURCE overrides the source file (default fuzz/fuzz_NAME.c).
function(cnd_fuzz_target name)
  cmake_parse_arguments(F "" "SOURCE;TIMEOUT" "LIBS" ${ARGN})
  if(NOT F_SOURCE)
    set(F_SOURCE ${CND_FUZZ_DIR}/fuzz_${name}.c)
  endif()
  if(NOT F_TIMEOUT)
    set(F_TIMEOUT 60)
  endif()
  add_executable(fuzz_replay_${name} ${CND_FUZZ_DIR}/replay.c ${F_SOURCE})
  target_link_libraries(fuzz_replay_${name} PRIVATE ${F_LIBS})
  target_include_directories(fuzz_replay_${name} PRIVATE ${CND_FUZZ_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
  cnd_target_options(fuzz_replay_${name})
  add_test(NAME fuzz_replay_${name} COMMAND fuzz_replay_${name} ${CND_FUZZ_DIR}/corpus/${name}
           ${CND_FUZZ_DIR}/regress/${name})
  set_tests_properties(fuzz_replay_${name} PROPERTIES LABELS fuzz TIMEOUT ${F_TIMEOUT}
                       ENVIRONMENT "OPENBLAS_NUM_THREADS=1;ASAN_OPTIONS=${CND_FUZZ_ASAN}")
  if(CND_FUZZ)
    add_executable(fuzz_${name} ${F_SOURCE})
    target_link_libraries(fuzz_${name} PRIVATE ${F_LIBS})
    target_include_directories(fuzz_${name} PRIVATE ${CND_FUZZ_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
    target_compile_definitions(fuzz_${name} PRIVATE _GNU_SOURCE)
    target_compile_options(fuzz_${name} PRIVATE -fsanitize=fuzzer,address,undefined
                           -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -UNDEBUG)
    target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer,address,undefined)
  endif()
endfunction()

cnd_fuzz_target(modelfile LIBS cnd_compress)
cnd_fuzz_target(checkpoint LIBS cnd_compress)
cnd_fuzz_target(artifact LIBS cnd_compress)
cnd_fuzz_target(idx LIBS cnd_compress)
cnd_fuzz_target(csv LIBS cnd_compress)
cnd_fuzz_target(spec LIBS cnd_compress)
cnd_fuzz_target(agent_config LIBS cnd_agent)
cnd_fuzz_target(manifest LIBS cnd_crypto)
cnd_fuzz_target(cert LIBS cnd_coordinator)
cnd_fuzz_target(audit_json LIBS cnd_audit)
cnd_fuzz_target(audit_proof LIBS cnd_audit)

# The wire protocol's target lives beside its tests (tests/fuzz_proto.c, tests/proto.cmake,
# which also builds its libFuzzer binary); here only its replay.
add_executable(fuzz_replay_proto ${CND_FUZZ_DIR}/replay.c ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_proto.c)
target_link_libraries(fuzz_replay_proto PRIVATE cnd_proto)
target_include_directories(fuzz_replay_proto PRIVATE ${CND_FUZZ_DIR})
cnd_target_options(fuzz_replay_proto)
add_test(NAME fuzz_replay_proto COMMAND fuzz_replay_proto ${CND_FUZZ_DIR}/corpus/proto
         ${CND_FUZZ_DIR}/regress/proto)
set_tests_properties(fuzz_replay_proto PROPERTIES LABELS fuzz TIMEOUT 60
                     ENVIRONMENT "ASAN_OPTIONS=${CND_FUZZ_ASAN}")

# Writes the seed corpus from the product's own writers (not a test: run by hand, see
# tests/fuzz/mkcorpus.c).
add_executable(fuzz_mkcorpus ${CND_FUZZ_DIR}/mkcorpus.c)
target_link_libraries(fuzz_mkcorpus PRIVATE cnd_coordinator cnd_compress cnd_crypto cnd_audit)
target_include_directories(fuzz_mkcorpus PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
cnd_target_options(fuzz_mkcorpus)
