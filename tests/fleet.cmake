# Tests of the edge side (deploy/edge*, fleet_sim) and the rollout engine (coordinator/rollout*,
# fleet_registry). Device counts shrink under sanitizers (CND_SANITIZE) to stay fast.
add_executable(fleet_mkart fleet_mkart.c)
target_link_libraries(fleet_mkart PRIVATE cnd_compress)
target_include_directories(fleet_mkart PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
cnd_target_options(fleet_mkart)
cnd_test(test_edge LABEL unit LIBS cnd_deploy cnd_compress TIMEOUT 60)
