# Helpers the generated plan calls: one function per kind of library.
#
# CUDA sources go through nvcc as custom commands (with depfiles, so Ninja tracks headers)
# rather than CMake's CUDA language: that keeps CMake's multi-second CUDA compiler probe off
# a cold build and keeps every nvcc flag visible in the plan.

set(CMAKE_POSITION_INDEPENDENT_CODE ON)
set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_EXTENSIONS OFF)
# Libraries are moved into a bundle and a server image: no build-tree RPATHs.
set(CMAKE_SKIP_BUILD_RPATH ON)

# trtis_nvcc_objects(<out-var> <tag> SOURCES ... [INCLUDE_DIRS ...] [FLAGS ...])
# Compiles each source with nvcc into <binary-dir>/<tag>/<file>.o and returns the objects.
function(trtis_nvcc_objects out_var tag)
  cmake_parse_arguments(A "" "" "SOURCES;INCLUDE_DIRS;FLAGS" ${ARGN})
  set(objects)
  set(includes)
  foreach(dir IN LISTS A_INCLUDE_DIRS)
    list(APPEND includes "-I${dir}")
  endforeach()
  foreach(src IN LISTS A_SOURCES)
    get_filename_component(file "${src}" NAME)
    set(obj "${CMAKE_BINARY_DIR}/${tag}/${file}.o")
    add_custom_command(
      OUTPUT "${obj}"
      COMMAND "${TRTIS_NVCC}" ${TRTIS_NVCC_FLAGS} ${A_FLAGS} ${includes}
              -MD -MF "${obj}.d" -c "${src}" -o "${obj}"
      DEPENDS "${src}"
      DEPFILE "${obj}.d"
      COMMENT "nvcc ${file} (${tag})"
      VERBATIM COMMAND_EXPAND_LISTS)
    list(APPEND objects "${obj}")
  endforeach()
  set(${out_var} ${objects} PARENT_SCOPE)
endfunction()

function(_trtis_cuda_link target)
  if(TRTIS_CUDA_ENABLED)
    target_link_libraries(${target} PRIVATE "${TRTIS_CUDART_STATIC}" dl pthread rt)
  endif()
endfunction()

# The framework-free kernels of one op: CPU kernel objects, nvcc objects, and a harness
# library (kernels/<framework>-<op>.so) that runs them without any framework.
function(_trtis_kernels prefix framework name)
  cmake_parse_arguments(A "" "" "KERNEL_SOURCES;CUDA_SOURCES;INCLUDE_DIRS;CXX_FLAGS;CUDA_FLAGS" ${ARGN})
  set(cuda_objects)
  if(TRTIS_CUDA_ENABLED AND A_CUDA_SOURCES)
    trtis_nvcc_objects(cuda_objects ${prefix}_cuda SOURCES ${A_CUDA_SOURCES}
                       INCLUDE_DIRS ${A_INCLUDE_DIRS} FLAGS ${A_CUDA_FLAGS})
  endif()
  if(A_KERNEL_SOURCES)
    add_library(${prefix}_cpu OBJECT ${A_KERNEL_SOURCES})
    target_include_directories(${prefix}_cpu PRIVATE ${A_INCLUDE_DIRS})
    target_compile_options(${prefix}_cpu PRIVATE ${A_CXX_FLAGS})
    set(cpu_objects "$<TARGET_OBJECTS:${prefix}_cpu>")
  else()
    set(cpu_objects)
  endif()
  if(TRTIS_CUDA_ENABLED AND cuda_objects)
    add_library(${prefix}_harness MODULE ${cpu_objects} ${cuda_objects})
    set_target_properties(${prefix}_harness PROPERTIES
      PREFIX "" OUTPUT_NAME "${framework}-${name}" LINKER_LANGUAGE CXX
      LIBRARY_OUTPUT_DIRECTORY "${TRTIS_OUTPUT_DIR}/kernels")
    target_link_options(${prefix}_harness PRIVATE -Wl,--no-undefined)
    _trtis_cuda_link(${prefix}_harness)
  endif()
  set(${prefix}_KERNEL_OBJECTS ${cpu_objects} ${cuda_objects} PARENT_SCOPE)
endfunction()

# trtis_tensorflow_op(<name> SOURCES ... [KERNEL_SOURCES ...] [CUDA_SOURCES ...]
#                     [GPU_SOURCES ...] [INCLUDE_DIRS ...] [CXX_FLAGS ...] [CUDA_FLAGS ...])
function(trtis_tensorflow_op name)
  cmake_parse_arguments(A "" "" "SOURCES;KERNEL_SOURCES;CUDA_SOURCES;GPU_SOURCES;INCLUDE_DIRS;CXX_FLAGS;CUDA_FLAGS" ${ARGN})
  set(prefix tf_${name})
  _trtis_kernels(${prefix} tensorflow ${name} KERNEL_SOURCES ${A_KERNEL_SOURCES}
                 CUDA_SOURCES ${A_CUDA_SOURCES} INCLUDE_DIRS ${A_INCLUDE_DIRS}
                 CXX_FLAGS ${A_CXX_FLAGS} CUDA_FLAGS ${A_CUDA_FLAGS})
  set(definitions ${TRTIS_TF_DEFINITIONS})
  set(has_cuda_code OFF)
  if(A_CUDA_SOURCES OR A_GPU_SOURCES)
    set(has_cuda_code ON)
  endif()
  set(gpu_objects)
  if(TRTIS_CUDA_ENABLED AND has_cuda_code)
    # The adapter registers its DEVICE_GPU kernel only when CUDA code is linked in.
    list(APPEND definitions TRTIS_WITH_CUDA=1)
    if(A_GPU_SOURCES)
      # Classic TensorFlow layout: *.cu.cc include TensorFlow headers and are CUDA code.
      list(APPEND definitions GOOGLE_CUDA=1)
      set(tf_defs)
      foreach(def IN LISTS TRTIS_TF_DEFINITIONS)
        list(APPEND tf_defs "-D${def}")
      endforeach()
      trtis_nvcc_objects(gpu_objects ${prefix}_gpu SOURCES ${A_GPU_SOURCES}
        INCLUDE_DIRS ${A_INCLUDE_DIRS} ${TRTIS_TF_SHIM_DIR} ${TRTIS_TF_INCLUDE_DIR}
        FLAGS -x cu -std=c++17 -DGOOGLE_CUDA=1 --expt-relaxed-constexpr ${tf_defs}
              -Xcompiler=-Wno-deprecated-declarations ${A_CUDA_FLAGS})
    endif()
  endif()
  # The adapter compiles in its own object library: CMake makes every source of a target
  # wait for that target's custom commands (here nvcc), and the TensorFlow-heavy adapter is
  # the longest compile, so it must start at once, beside nvcc.
  add_library(${prefix}_adapter OBJECT ${A_SOURCES})
  target_include_directories(${prefix}_adapter PRIVATE ${A_INCLUDE_DIRS})
  # -isystem: TensorFlow's headers are not ours to warn about.
  target_include_directories(${prefix}_adapter SYSTEM PRIVATE ${TRTIS_TF_INCLUDE_DIR})
  if(TRTIS_CUDA_ENABLED AND A_GPU_SOURCES)
    target_include_directories(${prefix}_adapter SYSTEM PRIVATE ${TRTIS_TF_SHIM_DIR} "${TRTIS_CUDA_INCLUDE_DIR}")
  endif()
  target_compile_definitions(${prefix}_adapter PRIVATE ${definitions})
  target_compile_options(${prefix}_adapter PRIVATE -Wno-deprecated-declarations ${A_CXX_FLAGS})
  add_library(${prefix} MODULE $<TARGET_OBJECTS:${prefix}_adapter> ${${prefix}_KERNEL_OBJECTS} ${gpu_objects})
  set_target_properties(${prefix} PROPERTIES OUTPUT_NAME ${name} LINKER_LANGUAGE CXX
    LIBRARY_OUTPUT_DIRECTORY "${TRTIS_OUTPUT_DIR}/tensorflow")
  # Unresolved symbols and ABI mismatches fail here, not when TensorFlow loads the library.
  target_link_options(${prefix} PRIVATE -Wl,--no-undefined)
  target_link_libraries(${prefix} PRIVATE "${TRTIS_TF_LIB_DIR}/${TRTIS_TF_FRAMEWORK_LIB}")
  _trtis_cuda_link(${prefix})
  set_property(GLOBAL APPEND PROPERTY TRTIS_LIBRARIES ${prefix})
endfunction()

# trtis_tensorrt_plugin(<name> SOURCES ... [KERNEL_SOURCES ...] [CUDA_SOURCES ...]
#                       [INCLUDE_DIRS ...] [CXX_FLAGS ...] [CUDA_FLAGS ...] [CONFIG_HEADER_DIR dir])
function(trtis_tensorrt_plugin name)
  cmake_parse_arguments(A "" "CONFIG_HEADER_DIR" "SOURCES;KERNEL_SOURCES;CUDA_SOURCES;INCLUDE_DIRS;CXX_FLAGS;CUDA_FLAGS" ${ARGN})
  set(prefix trt_${name})
  _trtis_kernels(${prefix} tensorrt ${name} KERNEL_SOURCES ${A_KERNEL_SOURCES}
                 CUDA_SOURCES ${A_CUDA_SOURCES} INCLUDE_DIRS ${A_INCLUDE_DIRS}
                 CXX_FLAGS ${A_CXX_FLAGS} CUDA_FLAGS ${A_CUDA_FLAGS})
  # The adapter in its own object library, so it compiles beside nvcc (see trtis_tensorflow_op).
  add_library(${prefix}_adapter OBJECT ${A_SOURCES})
  set_target_properties(${prefix}_adapter PROPERTIES CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  target_include_directories(${prefix}_adapter PRIVATE ${A_CONFIG_HEADER_DIR} ${A_INCLUDE_DIRS})
  target_include_directories(${prefix}_adapter SYSTEM PRIVATE ${TRTIS_TRT_INCLUDE_DIR} "${TRTIS_CUDA_INCLUDE_DIR}")
  if(TRTIS_CUDA_ENABLED AND A_CUDA_SOURCES)
    target_compile_definitions(${prefix}_adapter PRIVATE TRTIS_WITH_CUDA=1)
  endif()
  target_compile_options(${prefix}_adapter PRIVATE -Wno-deprecated-declarations ${A_CXX_FLAGS})
  add_library(${prefix} MODULE $<TARGET_OBJECTS:${prefix}_adapter> ${${prefix}_KERNEL_OBJECTS})
  set_target_properties(${prefix} PROPERTIES OUTPUT_NAME ${name} LINKER_LANGUAGE CXX
    LIBRARY_OUTPUT_DIRECTORY "${TRTIS_OUTPUT_DIR}/tensorrt")
  target_link_options(${prefix} PRIVATE -Wl,--no-undefined)
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
