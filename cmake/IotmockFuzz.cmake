# libFuzzer targets (tests/fuzz/, docs/fuzzing.md). Clang only: libFuzzer ships with it, and the
# targets are built with -fsanitize=fuzzer,address,undefined so that every memory error and every
# undefined behaviour a fuzz input provokes stops the run with a reproducer. Nothing here touches
# the normal build: it is included only when IOTMOCK_FUZZ is ON.
if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "IOTMOCK_FUZZ needs clang (libFuzzer): configure with "
                      "-DCMAKE_C_COMPILER=clang (got ${CMAKE_C_COMPILER_ID})")
endif()

add_library(iotmock_fuzz_flags INTERFACE)
target_compile_options(iotmock_fuzz_flags INTERFACE
  -g -O1 -fno-omit-frame-pointer
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
target_link_options(iotmock_fuzz_flags INTERFACE -fsanitize=fuzzer,address,undefined)

# iotmock_fuzz_target(NAME HARNESS_SOURCES... EMULATOR <emulator sources...>): one executable from
# its harness and the emulator sources it exercises, compiled directly (as the unit tests are), so
# that every line reached is instrumented for coverage and the sanitizers.
function(iotmock_fuzz_target name)
  cmake_parse_arguments(F "" "" "EMULATOR" ${ARGN})
  add_executable(${name} ${F_UNPARSED_ARGUMENTS} ${F_EMULATOR})
  # clang warns about things gcc, the normal build's compiler, does not: report them, but do not
  # let them stop the fuzzing of code that builds cleanly where it ships. Harnesses stay -Werror.
  set_source_files_properties(${F_EMULATOR} PROPERTIES COMPILE_OPTIONS -Wno-error)
  target_include_directories(${name} PRIVATE "${PROJECT_SOURCE_DIR}/emulator"
                                             "${CMAKE_CURRENT_SOURCE_DIR}")
  target_link_libraries(${name} PRIVATE OpenSSL::Crypto OpenSSL::SSL PkgConfig::CJSON
    PkgConfig::UUID PkgConfig::SQLITE PkgConfig::MHD PkgConfig::CURL PkgConfig::CBOR
    Threads::Threads iotmock_warnings iotmock_fuzz_flags)
  target_compile_definitions(${name} PRIVATE FIXTURES_DIR="${PROJECT_SOURCE_DIR}/fixtures")
  set_property(GLOBAL APPEND PROPERTY IOTMOCK_FUZZ_TARGETS ${name})
endfunction()
