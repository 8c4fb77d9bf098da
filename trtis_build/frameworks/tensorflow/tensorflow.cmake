# TensorFlow: the CMake function the plan calls per TensorFlow op (helpers: builder/cmake/TrtisOps.cmake).

# TRTIS_TF_PCH (the plan decides it from the number of adapters and the compiler): the
# precompiled headers that pay, by flavor. TensorFlow's op headers, 1,420 files that take most
# of each adapter's compile, parsed once into a header that the first adapter of a flavor makes
# and every later one reuses. The `cuda` flavor (adapters built with TRTIS_WITH_CUDA) also holds
# the stream executor, which those adapters include for the compute stream. Adapters are
# OBJECT libraries: no <target>_EXPORTS definition differs between them, which would make GCC
# ignore the header.
set(TRTIS_TF_PCH_HEADERS_cpu <tensorflow/core/framework/op.h> <tensorflow/core/framework/op_kernel.h>
    <tensorflow/core/framework/shape_inference.h>)
set(TRTIS_TF_PCH_HEADERS_cuda ${TRTIS_TF_PCH_HEADERS_cpu} <xla/stream_executor/stream.h>)

# trtis_tensorflow_op(<name> SOURCES ... [KERNEL_SOURCES ...] [CUDA_SOURCES ...]
#                     [GPU_SOURCES ...] [INCLUDE_DIRS ...] [CXX_FLAGS ...] [CUDA_FLAGS ...]
#                     [PCH cpu|cuda])   PCH: the header flavor the adapter can take (frameworks/tensorflow: pch_flavor)
function(trtis_tensorflow_op name)
  cmake_parse_arguments(PARSE_ARGV 1 A "" "KERNEL_LIBRARY;KERNELS_FROM;PCH" "SOURCES;KERNEL_SOURCES;CUDA_SOURCES;GPU_SOURCES;INCLUDE_DIRS;CXX_FLAGS;CUDA_FLAGS")
  set(prefix tf_${name})
  _trtis_kernels(${prefix} tensorflow ${name} KERNEL_SOURCES ${A_KERNEL_SOURCES}
                 CUDA_SOURCES ${A_CUDA_SOURCES} INCLUDE_DIRS ${A_INCLUDE_DIRS}
                 CXX_FLAGS ${A_CXX_FLAGS} CUDA_FLAGS ${A_CUDA_FLAGS} KERNEL_LIBRARY "${A_KERNEL_LIBRARY}" KERNELS_FROM "${A_KERNELS_FROM}")
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
  if(A_PCH AND A_PCH IN_LIST TRTIS_TF_PCH)
    get_property(pch_owner GLOBAL PROPERTY TRTIS_TF_PCH_OWNER_${A_PCH})
    if(pch_owner)
      target_precompile_headers(${prefix}_adapter REUSE_FROM ${pch_owner})
    else()
      target_precompile_headers(${prefix}_adapter PRIVATE ${TRTIS_TF_PCH_HEADERS_${A_PCH}})
      set_property(GLOBAL PROPERTY TRTIS_TF_PCH_OWNER_${A_PCH} ${prefix}_adapter)
    endif()
  endif()
  add_library(${prefix} MODULE $<TARGET_OBJECTS:${prefix}_adapter> ${${prefix}_KERNEL_OBJECTS} ${gpu_objects})
  set_target_properties(${prefix} PROPERTIES OUTPUT_NAME ${name} LINKER_LANGUAGE CXX
    LIBRARY_OUTPUT_DIRECTORY "${TRTIS_OUTPUT_DIR}/tensorflow")
  # Unresolved symbols and ABI mismatches fail here, not when TensorFlow loads the library.
  target_link_options(${prefix} PRIVATE -Wl,--no-undefined)
  target_link_libraries(${prefix} PRIVATE "${TRTIS_TF_LIB_DIR}/${TRTIS_TF_FRAMEWORK_LIB}")
  _trtis_cuda_link(${prefix})
  set_property(GLOBAL APPEND PROPERTY TRTIS_LIBRARIES ${prefix})
endfunction()
