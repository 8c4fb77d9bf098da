# PyTorch: the CMake function the plan calls per torch op (helpers: builder/cmake/TrtisOps.cmake).

# trtis_torch_op(<name> SOURCES ... [KERNEL_SOURCES ...] [CUDA_SOURCES ...] [INCLUDE_DIRS ...]
#                [CXX_FLAGS ...] [CUDA_FLAGS ...] ABI stable|exact TARGET_VERSION 0x... PYTHON ON|OFF)
function(trtis_torch_op name)
  cmake_parse_arguments(PARSE_ARGV 1 A "" "ABI;TARGET_VERSION;PYTHON;KERNEL_LIBRARY;KERNELS_FROM" "SOURCES;KERNEL_SOURCES;CUDA_SOURCES;INCLUDE_DIRS;CXX_FLAGS;CUDA_FLAGS")
  set(prefix torch_${name})
  _trtis_kernels(${prefix} torch ${name} KERNEL_SOURCES ${A_KERNEL_SOURCES}
                 CUDA_SOURCES ${A_CUDA_SOURCES} INCLUDE_DIRS ${A_INCLUDE_DIRS}
                 CXX_FLAGS ${A_CXX_FLAGS} CUDA_FLAGS ${A_CUDA_FLAGS} KERNEL_LIBRARY "${A_KERNEL_LIBRARY}" KERNELS_FROM "${A_KERNELS_FROM}")
  # The adapter in its own object library, so it compiles beside nvcc (see the TensorFlow one).
  add_library(${prefix}_adapter OBJECT ${A_SOURCES})
  target_include_directories(${prefix}_adapter PRIVATE ${A_INCLUDE_DIRS})
  # -isystem: torch's headers are not ours to warn about.
  target_include_directories(${prefix}_adapter SYSTEM PRIVATE ${TRTIS_TORCH_INCLUDE_DIR})
  set(torch_libs "${TRTIS_TORCH_LIB_DIR}/libtorch_cpu.so" "${TRTIS_TORCH_LIB_DIR}/libc10.so")
  if(A_ABI STREQUAL "stable")
    # Only the stable headers compile (any other torch header is an error), and only what
    # the target release already had: the library loads in that torch and every later one.
    target_compile_definitions(${prefix}_adapter PRIVATE TORCH_STABLE_ONLY TORCH_TARGET_VERSION=${A_TARGET_VERSION})
  else()
    # TORCH_LIBRARY code: torch's full C++ API, tied to the exact torch (and its C++ ABI flag).
    target_include_directories(${prefix}_adapter SYSTEM PRIVATE ${TRTIS_TORCH_API_INCLUDE_DIR})
    if(TRTIS_CUDA_INCLUDE_DIR)
      target_include_directories(${prefix}_adapter SYSTEM PRIVATE "${TRTIS_CUDA_INCLUDE_DIR}")
    endif()
    target_compile_definitions(${prefix}_adapter PRIVATE _GLIBCXX_USE_CXX11_ABI=${TRTIS_TORCH_CXX11_ABI})
    # torch's full C++ headers use C++20 concepts (2.14: ATen/core/TensorBase.h).
    set_target_properties(${prefix}_adapter PROPERTIES CXX_STANDARD 20)
    list(APPEND torch_libs "${TRTIS_TORCH_LIB_DIR}/libtorch.so")
  endif()
  if(A_PYTHON)
    list(APPEND torch_libs "${TRTIS_TORCH_LIB_DIR}/libtorch_python.so")
  endif()
  if(TRTIS_CUDA_ENABLED AND A_CUDA_SOURCES)
    target_compile_definitions(${prefix}_adapter PRIVATE TRTIS_WITH_CUDA=1)
  endif()
  target_compile_options(${prefix}_adapter PRIVATE ${A_CXX_FLAGS})
  add_library(${prefix} MODULE $<TARGET_OBJECTS:${prefix}_adapter> ${${prefix}_KERNEL_OBJECTS})
  set_target_properties(${prefix} PROPERTIES OUTPUT_NAME ${name} LINKER_LANGUAGE CXX
    LIBRARY_OUTPUT_DIRECTORY "${TRTIS_OUTPUT_DIR}/torch")
  # Every symbol resolves against torch's C++ libraries here, not when torch loads the
  # library; torch is loaded first in every process that loads this one, so no RPATH. Code
  # allowed to call Python (python = true) leaves Python's symbols to the interpreter that
  # loads it; the registry probe loads it with every symbol bound.
  if(NOT A_PYTHON)
    target_link_options(${prefix} PRIVATE -Wl,--no-undefined)
  endif()
  target_link_libraries(${prefix} PRIVATE ${torch_libs} dl)
  _trtis_cuda_link(${prefix})
  set_property(GLOBAL APPEND PROPERTY TRTIS_LIBRARIES ${prefix})
endfunction()
