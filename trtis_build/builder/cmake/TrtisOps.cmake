# The helpers every framework's CMake functions share (frameworks/<name>/<name>.cmake holds
# the function the generated plan calls per op of that framework; the plan includes it).
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

# trtis_nvcc_objects(<out-var> <tag> SOURCES ... [INCLUDE_DIRS ...] [SYSTEM_INCLUDE_DIRS ...] [FLAGS ...])
# Compiles each source with nvcc into <binary-dir>/<tag>/<tag>.<file>.o and returns the objects.
function(trtis_nvcc_objects out_var tag)
  cmake_parse_arguments(PARSE_ARGV 2 A "" "" "SOURCES;INCLUDE_DIRS;SYSTEM_INCLUDE_DIRS;FLAGS")
  set(objects)
  set(includes)
  foreach(dir IN LISTS A_INCLUDE_DIRS)
    list(APPEND includes "-I${dir}")
  endforeach()
  foreach(dir IN LISTS A_SYSTEM_INCLUDE_DIRS)  # framework headers: not ours to warn about
    list(APPEND includes -isystem "${dir}")
  endforeach()
  foreach(src IN LISTS A_SOURCES)
    get_filename_component(file "${src}" NAME)
    # <tag>.<file>.o: a name of its own (sccache reports each compile by its output's name).
    set(obj "${CMAKE_BINARY_DIR}/${tag}/${tag}.${file}.o")
    add_custom_command(
      OUTPUT "${obj}"
      # Byte-identical objects in every build and checkout: nvcc names internal symbols
      # (anonymous namespaces) from a random number (-frandom-seed fixes it) and a hash of the
      # source's absolute path (cudafe++'s --orig_src_path_name, which the launcher makes
      # relative), and the host object's file symbol names a temporary file (a process id, or
      # sccache's scratch name): file symbols are stripped (no identifier has a '.').
      COMMAND ${TRTIS_COMPILER_LAUNCHER} "${TRTIS_NVCC}" ${TRTIS_NVCC_FLAGS} ${A_FLAGS} ${includes}
              "-frandom-seed=${src}" "-Xcudafe=--orig_src_path_name=${src}"
              -MD -MF "${obj}.d" -c "${src}" -o "${obj}"
      COMMAND "${CMAKE_OBJCOPY}" --wildcard "--strip-symbol=tmpxft_*" "--strip-symbol=*.cpp" "--strip-symbol=*.o"
              "${obj}"
      DEPENDS "${src}"
      DEPFILE "${obj}.d"
      COMMENT "nvcc ${file} (${tag})"
      VERBATIM COMMAND_EXPAND_LISTS)
    list(APPEND objects "${obj}")
  endforeach()
  set(${out_var} ${objects} PARENT_SCOPE)
endfunction()

# The linker the toolchain chose (builder/toolchain.py: lld where installed) for every library
# of the plan; called once the plan has made them. Links sit on a cold build's critical path.
function(trtis_use_linker)
  if(NOT TRTIS_LINKER)
    return()
  endif()
  get_property(targets DIRECTORY PROPERTY BUILDSYSTEM_TARGETS)
  foreach(target IN LISTS targets)
    get_target_property(type ${target} TYPE)
    if(type MATCHES "^(SHARED_LIBRARY|MODULE_LIBRARY|EXECUTABLE)$")
      target_link_options(${target} PRIVATE -fuse-ld=${TRTIS_LINKER})
    endif()
  endforeach()
endfunction()

function(_trtis_cuda_link target)
  if(TRTIS_CUDA_ENABLED)
    target_link_libraries(${target} PRIVATE "${TRTIS_CUDART_STATIC}" dl pthread rt)
  endif()
endfunction()

# The kernels of one op: CPU kernel objects, nvcc objects, and a harness library
# (kernels/<framework>-<op>.so) that runs them without any framework, unless KERNEL_LIBRARY
# is OFF (op.toml `kernel_library`, off by default where a kernel source includes the
# framework's headers: such code may call the adapter's helpers, which the harness lacks).
# SYSTEM_INCLUDE_DIRS: headers the framework's kernels may include (TensorRT's plugins do).
# KERNELS_FROM <prefix>: link that op's kernel objects instead of compiling the same sources
# again (the plan decides: builder/plan.py _share_kernels; that op's call comes first).
function(_trtis_kernels prefix framework name)
  cmake_parse_arguments(PARSE_ARGV 3 A "" "KERNEL_LIBRARY;KERNELS_FROM" "KERNEL_SOURCES;CUDA_SOURCES;INCLUDE_DIRS;SYSTEM_INCLUDE_DIRS;CXX_FLAGS;CUDA_FLAGS")
  set(cpu_objects)
  set(cuda_objects)
  if(A_KERNELS_FROM)
    get_property(cpu_objects GLOBAL PROPERTY TRTIS_CPU_OBJECTS_${A_KERNELS_FROM})
    get_property(cuda_objects GLOBAL PROPERTY TRTIS_CUDA_OBJECTS_${A_KERNELS_FROM})
  else()
    if(TRTIS_CUDA_ENABLED AND A_CUDA_SOURCES)
      trtis_nvcc_objects(cuda_objects ${prefix}_cuda SOURCES ${A_CUDA_SOURCES}
                         INCLUDE_DIRS ${A_INCLUDE_DIRS} SYSTEM_INCLUDE_DIRS ${A_SYSTEM_INCLUDE_DIRS}
                         FLAGS ${A_CUDA_FLAGS})
    endif()
    if(A_KERNEL_SOURCES)
      add_library(${prefix}_cpu OBJECT ${A_KERNEL_SOURCES})
      target_include_directories(${prefix}_cpu PRIVATE ${A_INCLUDE_DIRS})
      target_include_directories(${prefix}_cpu SYSTEM PRIVATE ${A_SYSTEM_INCLUDE_DIRS})
      target_compile_options(${prefix}_cpu PRIVATE ${A_CXX_FLAGS})
      set(cpu_objects "$<TARGET_OBJECTS:${prefix}_cpu>")
    endif()
    set_property(GLOBAL PROPERTY TRTIS_CPU_OBJECTS_${prefix} ${cpu_objects})
    set_property(GLOBAL PROPERTY TRTIS_CUDA_OBJECTS_${prefix} ${cuda_objects})
  endif()
  if(TRTIS_CUDA_ENABLED AND cuda_objects AND NOT A_KERNEL_LIBRARY STREQUAL "OFF")
    add_library(${prefix}_harness MODULE ${cpu_objects} ${cuda_objects})
    set_target_properties(${prefix}_harness PROPERTIES
      PREFIX "" OUTPUT_NAME "${framework}-${name}" LINKER_LANGUAGE CXX
      LIBRARY_OUTPUT_DIRECTORY "${TRTIS_OUTPUT_DIR}/kernels")
    target_link_options(${prefix}_harness PRIVATE -Wl,--no-undefined)
    _trtis_cuda_link(${prefix}_harness)
  endif()
  set(${prefix}_KERNEL_OBJECTS ${cpu_objects} ${cuda_objects} PARENT_SCOPE)
endfunction()
