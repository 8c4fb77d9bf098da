# TensorRT: the CMake function the plan calls per TensorRT op (helpers: builder/cmake/TrtisOps.cmake).

# What a plugin library exports: TensorRT's entry points by name (exports.map, an ld version
# script, as TensorRT's own build uses), and nothing else. Hidden visibility is not used for
# that: code written for TensorRT's export macro, empty outside TensorRT's build, would lose
# getCreators.
set(TRTIS_TRT_EXPORT_MAP "${CMAKE_CURRENT_LIST_DIR}/exports.map")
# REGISTRATION static (registration.py): REGISTER_TENSORRT_PLUGIN collects the creators for a
# generated getCreators instead of calling libnvinfer's global registry.
set(TRTIS_TRT_STATIC_REGISTRATION_DIR "${CMAKE_CURRENT_LIST_DIR}/static_registration")

# trtis_tensorrt_plugin(<name> SOURCES ... [KERNEL_SOURCES ...] [CUDA_SOURCES ...]
#                       [INCLUDE_DIRS ...] [CXX_FLAGS ...] [CUDA_FLAGS ...] [CONFIG_HEADER_DIR dir]
#                       [REGISTRATION getCreators|static])
function(trtis_tensorrt_plugin name)
  cmake_parse_arguments(PARSE_ARGV 1 A "" "CONFIG_HEADER_DIR;KERNEL_LIBRARY;KERNELS_FROM;REGISTRATION" "SOURCES;KERNEL_SOURCES;CUDA_SOURCES;INCLUDE_DIRS;CXX_FLAGS;CUDA_FLAGS")
  set(prefix trt_${name})
  _trtis_kernels(${prefix} tensorrt ${name} KERNEL_SOURCES ${A_KERNEL_SOURCES}
                 CUDA_SOURCES ${A_CUDA_SOURCES} INCLUDE_DIRS ${A_INCLUDE_DIRS}
                 CXX_FLAGS ${A_CXX_FLAGS} CUDA_FLAGS ${A_CUDA_FLAGS} KERNEL_LIBRARY "${A_KERNEL_LIBRARY}" KERNELS_FROM "${A_KERNELS_FROM}"
                 SYSTEM_INCLUDE_DIRS ${TRTIS_TRT_INCLUDE_DIR} "${TRTIS_CUDA_INCLUDE_DIR}")
  # The adapter in its own object library, so it compiles beside nvcc (see the TensorFlow one).
  set(adapter_sources ${A_SOURCES})
  if(A_REGISTRATION STREQUAL "static")
    list(APPEND adapter_sources "${TRTIS_TRT_STATIC_REGISTRATION_DIR}/trtis_static_registration.cc")
  endif()
  add_library(${prefix}_adapter OBJECT ${adapter_sources})
  set_target_properties(${prefix}_adapter PROPERTIES VISIBILITY_INLINES_HIDDEN ON)
  if(A_REGISTRATION STREQUAL "static")
    target_compile_options(${prefix}_adapter PRIVATE
      "SHELL:-include \"${TRTIS_TRT_STATIC_REGISTRATION_DIR}/trtis_static_registration.h\"")
  endif()
  target_include_directories(${prefix}_adapter PRIVATE ${A_CONFIG_HEADER_DIR} ${A_INCLUDE_DIRS})
  target_include_directories(${prefix}_adapter SYSTEM PRIVATE ${TRTIS_TRT_INCLUDE_DIR} "${TRTIS_CUDA_INCLUDE_DIR}")
  if(TRTIS_CUDA_ENABLED AND A_CUDA_SOURCES)
    target_compile_definitions(${prefix}_adapter PRIVATE TRTIS_WITH_CUDA=1)
  endif()
  target_compile_options(${prefix}_adapter PRIVATE -Wno-deprecated-declarations ${A_CXX_FLAGS})
  add_library(${prefix} MODULE $<TARGET_OBJECTS:${prefix}_adapter> ${${prefix}_KERNEL_OBJECTS})
  set_target_properties(${prefix} PROPERTIES OUTPUT_NAME ${name} LINKER_LANGUAGE CXX
    LIBRARY_OUTPUT_DIRECTORY "${TRTIS_OUTPUT_DIR}/tensorrt")
  target_link_options(${prefix} PRIVATE -Wl,--no-undefined "-Wl,--version-script=${TRTIS_TRT_EXPORT_MAP}")
  set_property(TARGET ${prefix} APPEND PROPERTY LINK_DEPENDS "${TRTIS_TRT_EXPORT_MAP}")
  _trtis_cuda_link(${prefix})
  set_property(GLOBAL APPEND PROPERTY TRTIS_LIBRARIES ${prefix})

  # The autoload shim (tensorrt/autoload/lib<name>.so): Triton's plugins= only dlopens, and
  # this library registers the plugin library beside it into the TensorRT already loaded.
  # TensorRT and CUDA headers only; it finds libnvinfer at run time, so it links nothing of it.
  add_library(${prefix}_autoload MODULE "${TRTIS_AUTOLOAD_SOURCE}")
  set_target_properties(${prefix}_autoload PROPERTIES OUTPUT_NAME ${name}
    LIBRARY_OUTPUT_DIRECTORY "${TRTIS_OUTPUT_DIR}/tensorrt/autoload"
    CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  target_include_directories(${prefix}_autoload SYSTEM PRIVATE ${TRTIS_TRT_INCLUDE_DIR} "${TRTIS_CUDA_INCLUDE_DIR}")
  target_link_options(${prefix}_autoload PRIVATE -Wl,--no-undefined)
  target_link_libraries(${prefix}_autoload PRIVATE dl)
endfunction()
