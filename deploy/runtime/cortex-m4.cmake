# cortex-m4.cmake: CMake toolchain file for building the integer runtime for an Arm Cortex-M4
# with Debian's gcc-arm-none-eabi and newlib (libnewlib-arm-none-eabi):
#
#   cmake -S deploy/runtime -B build-m4 -DCMAKE_TOOLCHAIN_FILE=deploy/runtime/cortex-m4.cmake \
#         [-DCND_RT_FIRMWARE_MODEL=model.c]      # from: condenser export M.cndq --c-array
#   cmake --build build-m4 && arm-none-eabi-size build-m4/libcnd_runtime.a
#
# The runtime does no floating-point arithmetic, so the float ABI only has to match the
# application it links into. The default is soft, which also makes any accidental float
# operation visible as a call to an __aeabi_f*/__aeabi_d* helper (tests check there is none);
# pass -DCND_M4_FLOAT_ABI=hard for an M4F application built with the FPU.
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(CMAKE_C_COMPILER arm-none-eabi-gcc)
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
set(CND_M4_FLOAT_ABI soft CACHE STRING "soft or hard (hard adds -mfpu=fpv4-sp-d16)")
set(_cnd_m4_flags "-mcpu=cortex-m4 -mthumb -mfloat-abi=${CND_M4_FLOAT_ABI}")
if(CND_M4_FLOAT_ABI STREQUAL "hard")
  string(APPEND _cnd_m4_flags " -mfpu=fpv4-sp-d16")
endif()
set(CMAKE_C_FLAGS_INIT "${_cnd_m4_flags} -ffunction-sections -fdata-sections")
set(CMAKE_EXE_LINKER_FLAGS_INIT "--specs=nano.specs --specs=nosys.specs -Wl,--gc-sections")
set(CMAKE_C_FLAGS_RELEASE_INIT "-Os -DNDEBUG")
if(NOT CMAKE_BUILD_TYPE)
  set(CMAKE_BUILD_TYPE Release CACHE STRING "" FORCE)
endif()
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
