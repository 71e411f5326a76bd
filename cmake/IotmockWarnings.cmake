add_library(iotmock_warnings INTERFACE)
target_compile_options(iotmock_warnings INTERFACE
  -Wall -Wextra -Wshadow -Wformat=2 -Wundef -Wstrict-prototypes -Wmissing-prototypes
  -Wwrite-strings -Wimplicit-fallthrough -Wno-unused-parameter
  $<$<BOOL:${IOTMOCK_WERROR}>:-Werror>)
