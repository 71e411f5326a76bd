add_library(iotmock_sanitizers INTERFACE)
if(IOTMOCK_SANITIZE)
  target_compile_options(iotmock_sanitizers INTERFACE
    -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_link_options(iotmock_sanitizers INTERFACE -fsanitize=address,undefined)
  # The broker (Debian's mosquitto) is not instrumented: `iotmock serve` preloads the runtime.
  execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=libasan.so
                  OUTPUT_VARIABLE IOTMOCK_ASAN_RUNTIME OUTPUT_STRIP_TRAILING_WHITESPACE)
  target_compile_definitions(iotmock_sanitizers INTERFACE
    IOTMOCK_ASAN_RUNTIME="${IOTMOCK_ASAN_RUNTIME}"
    IOTMOCK_LSAN_SUPPRESSIONS="${PROJECT_SOURCE_DIR}/tests/sanitizers/lsan-broker.supp")
endif()
