# The broker's plugin API ships headers only (mosquitto-dev) and no .pc file; symbols resolve
# against the broker at load time, so this target adds include paths and nothing to link.
find_path(MOSQUITTO_PLUGIN_INCLUDE_DIR NAMES mosquitto_plugin.h mosquitto_broker.h)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(MosquittoPlugin REQUIRED_VARS MOSQUITTO_PLUGIN_INCLUDE_DIR)
if(MosquittoPlugin_FOUND AND NOT TARGET Mosquitto::PluginApi)
  add_library(Mosquitto::PluginApi INTERFACE IMPORTED)
  set_target_properties(Mosquitto::PluginApi PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${MOSQUITTO_PLUGIN_INCLUDE_DIR}")
endif()
