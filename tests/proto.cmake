# Tests of proto/: wire messages, validation, chunking, the CurveZMQ transport and ZAP.
cnd_test(test_proto LABEL unit LIBS cnd_proto TIMEOUT 60)
cnd_test(test_proto_chunk LABEL unit LIBS cnd_proto TIMEOUT 60)
cnd_test(test_proto_secagg LABEL unit LIBS cnd_proto TIMEOUT 60)
cnd_test(test_transport LABEL integration LIBS cnd_proto TIMEOUT 30)
cnd_test(test_zap LABEL integration LIBS cnd_proto TIMEOUT 30)
cnd_test(test_transport_gate LABEL integration LIBS cnd_proto TIMEOUT 30)

# The fuzz target's function driven over a generated corpus of valid and mutated messages, with
# whatever compiler builds the project, so ordinary CI runs exercise it.
cnd_test(test_proto_fuzz LABEL fuzz LIBS cnd_proto SOURCES fuzz_proto.c TIMEOUT 120)

# The libFuzzer binary: automatic when the compiler is clang, or requested with -DCND_FUZZ=ON
# (which then requires clang: CC=clang cmake -S . -B build-fuzz -DCND_FUZZ=ON).
option(CND_FUZZ "Build the libFuzzer target fuzz_proto (needs clang)" OFF)
if(CND_FUZZ AND NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "CND_FUZZ=ON needs clang: CC=clang cmake -S . -B build-fuzz -DCND_FUZZ=ON")
endif()
if(CMAKE_C_COMPILER_ID MATCHES "Clang")
  add_executable(fuzz_proto fuzz_proto.c ${CND_PROTO_SOURCES})
  target_include_directories(fuzz_proto PRIVATE ${CND_PROTO_INCLUDE_DIRS})
  target_link_libraries(fuzz_proto PRIVATE cnd_crypto cnd_common PkgConfig::PROTOBUFC PkgConfig::SODIUM m)
  add_dependencies(fuzz_proto cnd_proto) # the generated header comes from cnd_proto's rule
  target_compile_definitions(fuzz_proto PRIVATE _GNU_SOURCE)
  target_compile_options(fuzz_proto PRIVATE -g -O1 -fsanitize=fuzzer,address,undefined)
  target_link_options(fuzz_proto PRIVATE -fsanitize=fuzzer,address,undefined)
  set(CND_FUZZ_CORPUS ${CMAKE_CURRENT_BINARY_DIR}/fuzz_proto_corpus)
  file(MAKE_DIRECTORY ${CND_FUZZ_CORPUS})
  add_test(NAME fuzz_proto_seed COMMAND test_proto_fuzz --write-corpus ${CND_FUZZ_CORPUS})
  set_tests_properties(fuzz_proto_seed PROPERTIES LABELS fuzz FIXTURES_SETUP fuzz_corpus)
  add_test(NAME fuzz_proto COMMAND fuzz_proto -runs=200000 -max_total_time=60 -max_len=8192
           -seed=1 ${CND_FUZZ_CORPUS})
  set_tests_properties(fuzz_proto PROPERTIES LABELS fuzz TIMEOUT 120 FIXTURES_REQUIRED fuzz_corpus)
endif()

# The benchmark command end to end on a small vector: it checks that the decoded vector and
# every frame sent through the relay come back byte-identical, and fails otherwise.
add_test(NAME bench_proto_smoke
         COMMAND condenser bench proto --values 20000 --bits 12 --chunk 4096 --reps 2 --rtt 20 --json)
set_tests_properties(bench_proto_smoke PROPERTIES LABELS integration TIMEOUT 60
                     PASS_REGULAR_EXPRESSION "\"wire_bytes_per_value\":1\\.5")
# `bench secagg` and `bench proto` end to end on small inputs: every report line, the JSON
# counts against the options, and the errors of bad options (exit codes and messages).
add_test(NAME cli_bench COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli_bench.sh)
set_tests_properties(cli_bench PROPERTIES LABELS integration TIMEOUT 120 SKIP_RETURN_CODE 77
                     ENVIRONMENT "CND_BIN=$<TARGET_FILE:condenser>")
