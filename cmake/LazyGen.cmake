# LazyGen.cmake: run lazygen as a build step.
#
#   include(LazyGen)            # with this folder on CMAKE_MODULE_PATH
#   find_package(LazyGen CONFIG) # or through LazyGenConfig.cmake
#
#   lazygen_generate(
#     SOURCE_YAML <yaml>                       # required
#     [OUTPUT_DIR <dir>]     # default ${CMAKE_CURRENT_BINARY_DIR}/lazygen[/<INCLUDE_PREFIX>]
#     [ATEN_PATH <dir>] [BACKEND_NAME <name>]
#     [NODE_BASE <class>] [NODE_BASE_HDR <hdr>] [TENSOR_CLASS <class>] [TENSOR_CLASS_HDR <hdr>]
#     [SHAPE_INFERENCE_HDR <hdr>] [SHAPE_INFERENCE_FILE <file>] [IMPL_PATH <file>]
#     [INCLUDE_PREFIX <prefix>] [TEMPLATE_DIRS <dir>...]
#     [SHARDS <n>]             # split kernels, registration and IR classes into n files each
#     [TORCH_VERSION <X.Y>]    # write what torchgen of that torch release writes (2.5 to 2.15)
#     [GEN_TS_LOWERINGS] [BUILD_IN_TREE] [PER_OPERATOR_HEADERS] [GEN_FORCED_FALLBACK_CODE]
#     [QUALIFY_NAMES] [NO_SHAPE_INFERENCE_CHECK]
#     [EXTRA_ARGS <arg>...]
#     [TARGET <target>]        # gets the sources (PRIVATE), the include directory and a dependency
#     [PRECOMPILE_HEADERS]     # with TARGET: precompile the torch headers every generated file includes
#     [OUT_SOURCES <var>] [OUT_HEADERS <var>]   # the generated .cpp / .h paths
#     [OUT_INCLUDE_DIR <var>]  # the folder to put on the include path
#     [OUT_TARGET <var>])      # the custom target that runs the generator
#
# The generator is LAZYGEN_EXECUTABLE (a command, may be a list) if set, else
# `${Python3_EXECUTABLE} -m lazygen`.
#
# The generated files work like any source: list them in add_library(),
# add_custom_target(... DEPENDS), install(FILES), from this directory; use
# the include directory from any other.
#
# How it stays incremental:
# - The output names come from `lazygen --list-outputs` at configure time, and
#   the yaml is a configure dependency, so adding an `autograd` section (one
#   more output) reconfigures. Nothing is written at configure time.
# - lazygen rewrites only files whose content changed, so a yaml comment
#   re-runs the generator and recompiles nothing: Ninja restats the generated
#   files (real outputs of the rule); Makefiles, which cannot, get a stamp
#   rule plus one ordering-only rule per file (see below).
# - lazygen's depfile lists every file it read (catalogue, shape header,
#   templates), so those changes re-run it too.

include_guard(GLOBAL)

if(CMAKE_VERSION VERSION_LESS 3.20)
  message(FATAL_ERROR "LazyGen needs CMake 3.20 or newer (DEPFILE support); this is ${CMAKE_VERSION}")
endif()

# Recorded into the function below: CMP0116 makes Ninja read depfile paths
# relative to the current binary directory, like the Makefile generators.
cmake_policy(VERSION 3.20...3.31)

function(lazygen_generate)
  set(_flags GEN_TS_LOWERINGS BUILD_IN_TREE PER_OPERATOR_HEADERS GEN_FORCED_FALLBACK_CODE
             QUALIFY_NAMES NO_SHAPE_INFERENCE_CHECK)
  # Flags of this function only, not passed to lazygen.
  set(_own_flags PRECOMPILE_HEADERS)
  set(_single SOURCE_YAML OUTPUT_DIR ATEN_PATH BACKEND_NAME NODE_BASE NODE_BASE_HDR
              TENSOR_CLASS TENSOR_CLASS_HDR SHAPE_INFERENCE_HDR SHAPE_INFERENCE_FILE IMPL_PATH
              INCLUDE_PREFIX SHARDS TORCH_VERSION TARGET OUT_SOURCES OUT_HEADERS OUT_TARGET OUT_INCLUDE_DIR)
  set(_multi TEMPLATE_DIRS EXTRA_ARGS)
  cmake_parse_arguments(PARSE_ARGV 0 arg "${_flags};${_own_flags}" "${_single}" "${_multi}")

  # --- argument checks: every message names the argument ---
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "lazygen_generate: unknown argument(s): ${arg_UNPARSED_ARGUMENTS}")
  endif()
  if(arg_KEYWORDS_MISSING_VALUES)
    message(FATAL_ERROR "lazygen_generate: missing value for: ${arg_KEYWORDS_MISSING_VALUES}")
  endif()
  if(NOT arg_SOURCE_YAML)
    message(FATAL_ERROR "lazygen_generate: SOURCE_YAML is required")
  endif()
  if(DEFINED arg_SHARDS AND NOT arg_SHARDS MATCHES "^[1-9][0-9]*$")
    message(FATAL_ERROR "lazygen_generate: SHARDS must be a whole number of at least 1, not '${arg_SHARDS}'")
  endif()
  if(arg_PRECOMPILE_HEADERS AND NOT arg_TARGET)
    message(FATAL_ERROR "lazygen_generate: PRECOMPILE_HEADERS needs TARGET (the target whose C++ sources use the precompiled header)")
  endif()
  if(arg_TARGET AND NOT TARGET "${arg_TARGET}")
    message(FATAL_ERROR "lazygen_generate: TARGET '${arg_TARGET}' is not a target")
  endif()

  # Files the user names are relative to the current source directory.
  foreach(_kw SOURCE_YAML IMPL_PATH SHAPE_INFERENCE_FILE)
    if(arg_${_kw})
      cmake_path(ABSOLUTE_PATH arg_${_kw} BASE_DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}" NORMALIZE)
      if(NOT EXISTS "${arg_${_kw}}" OR IS_DIRECTORY "${arg_${_kw}}")
        message(FATAL_ERROR "lazygen_generate: ${_kw} file does not exist: ${arg_${_kw}}")
      endif()
    endif()
  endforeach()
  if(arg_ATEN_PATH)
    cmake_path(ABSOLUTE_PATH arg_ATEN_PATH BASE_DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}" NORMALIZE)
    if(NOT IS_DIRECTORY "${arg_ATEN_PATH}")
      message(FATAL_ERROR "lazygen_generate: ATEN_PATH directory does not exist: ${arg_ATEN_PATH}")
    endif()
  endif()
  set(_template_dirs "")
  foreach(_dir IN LISTS arg_TEMPLATE_DIRS)
    cmake_path(ABSOLUTE_PATH _dir BASE_DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}" NORMALIZE)
    if(NOT IS_DIRECTORY "${_dir}")
      message(FATAL_ERROR "lazygen_generate: TEMPLATE_DIRS directory does not exist: ${_dir}")
    endif()
    list(APPEND _template_dirs "${_dir}")
  endforeach()

  # Generated files include each other as <INCLUDE_PREFIX/name>, so the
  # include directory is OUTPUT_DIR with the prefix taken off its end.
  set(_default_dir "${CMAKE_CURRENT_BINARY_DIR}/lazygen")
  if(arg_INCLUDE_PREFIX)
    string(REGEX REPLACE "^/+|/+$" "" arg_INCLUDE_PREFIX "${arg_INCLUDE_PREFIX}")
    string(APPEND _default_dir "/${arg_INCLUDE_PREFIX}")
  endif()
  if(NOT arg_OUTPUT_DIR)
    set(arg_OUTPUT_DIR "${_default_dir}")
  endif()
  cmake_path(ABSOLUTE_PATH arg_OUTPUT_DIR BASE_DIRECTORY "${CMAKE_CURRENT_BINARY_DIR}" NORMALIZE)
  string(REGEX REPLACE "/+$" "" arg_OUTPUT_DIR "${arg_OUTPUT_DIR}")
  set(_include_dir "${arg_OUTPUT_DIR}")
  if(arg_INCLUDE_PREFIX)
    string(LENGTH "/${arg_INCLUDE_PREFIX}" _suffix_len)
    string(LENGTH "${arg_OUTPUT_DIR}" _dir_len)
    math(EXPR _root_len "${_dir_len} - ${_suffix_len}")
    if(_root_len LESS 1)
      set(_suffix "")
    else()
      string(SUBSTRING "${arg_OUTPUT_DIR}" ${_root_len} -1 _suffix)
    endif()
    if(NOT _suffix STREQUAL "/${arg_INCLUDE_PREFIX}")
      message(FATAL_ERROR "lazygen_generate: OUTPUT_DIR '${arg_OUTPUT_DIR}' must end with "
                          "INCLUDE_PREFIX '${arg_INCLUDE_PREFIX}' so that <${arg_INCLUDE_PREFIX}/LazyIr.h> resolves")
    endif()
    string(SUBSTRING "${arg_OUTPUT_DIR}" 0 ${_root_len} _include_dir)
  endif()

  # --- the generator command ---
  if(LAZYGEN_EXECUTABLE)
    set(_lazygen ${LAZYGEN_EXECUTABLE})
  else()
    if(NOT Python3_EXECUTABLE)
      find_package(Python3 COMPONENTS Interpreter REQUIRED)
    endif()
    set(_lazygen "${Python3_EXECUTABLE}" -m lazygen)
  endif()

  set(_args -s "${arg_SOURCE_YAML}" -o "${arg_OUTPUT_DIR}")
  foreach(_pair ATEN_PATH:--aten-path BACKEND_NAME:--backend-name NODE_BASE:--node-base
                NODE_BASE_HDR:--node-base-hdr TENSOR_CLASS:--tensor-class
                TENSOR_CLASS_HDR:--tensor-class-hdr SHAPE_INFERENCE_HDR:--shape-inference-hdr
                SHAPE_INFERENCE_FILE:--shape-inference-file IMPL_PATH:--impl-path
                INCLUDE_PREFIX:--include-prefix SHARDS:--shards TORCH_VERSION:--torch-version)
    string(REPLACE ":" ";" _pair "${_pair}")
    list(GET _pair 0 _kw)
    list(GET _pair 1 _opt)
    if(NOT "${arg_${_kw}}" STREQUAL "")
      list(APPEND _args "${_opt}" "${arg_${_kw}}")
    endif()
  endforeach()
  foreach(_dir IN LISTS _template_dirs)
    list(APPEND _args --template-dir "${_dir}")
  endforeach()
  foreach(_flag IN LISTS _flags)
    if(arg_${_flag})
      string(TOLOWER "--${_flag}" _opt)
      string(REPLACE "_" "-" _opt "${_opt}")
      list(APPEND _args "${_opt}")
    endif()
  endforeach()
  list(APPEND _args ${arg_EXTRA_ARGS})

  # --- outputs, known before anything is generated ---
  execute_process(
    COMMAND ${_lazygen} ${_args} --list-outputs
    WORKING_DIRECTORY "${CMAKE_CURRENT_BINARY_DIR}"
    RESULT_VARIABLE _rc
    OUTPUT_VARIABLE _listed
    ERROR_VARIABLE _err)
  if(NOT _rc STREQUAL "0")
    list(JOIN _lazygen " " _shown)
    # Indented lines are printed as they are: lazygen's `path:line:col: error:` stays whole.
    string(STRIP "${_err}" _err)
    string(REPLACE "\n" "\n  " _err "  ${_err}")
    message(FATAL_ERROR "lazygen_generate: `${_shown} --list-outputs` failed (${_rc}) for "
                        "SOURCE_YAML ${arg_SOURCE_YAML}:\n${_err}\n"
                        "If lazygen is not installed for that interpreter, set LAZYGEN_EXECUTABLE "
                        "or Python3_EXECUTABLE.")
  endif()
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${arg_SOURCE_YAML}")

  string(REGEX REPLACE "\r?\n" ";" _listed "${_listed}")
  set(_sources "")
  set(_headers "")
  foreach(_file IN LISTS _listed)
    if(_file STREQUAL "")
      continue()
    endif()
    cmake_path(ABSOLUTE_PATH _file BASE_DIRECTORY "${CMAKE_CURRENT_BINARY_DIR}" NORMALIZE)
    if(_file MATCHES "\\.(h|hpp)$")
      list(APPEND _headers "${_file}")
    else()
      list(APPEND _sources "${_file}")
    endif()
  endforeach()
  if(NOT _sources AND NOT _headers)
    message(FATAL_ERROR "lazygen_generate: lazygen listed no outputs for SOURCE_YAML ${arg_SOURCE_YAML}")
  endif()

  # One owner target per output directory; its stamp and depfile live in CMakeFiles.
  cmake_path(RELATIVE_PATH arg_OUTPUT_DIR BASE_DIRECTORY "${CMAKE_BINARY_DIR}" OUTPUT_VARIABLE _rel)
  string(MAKE_C_IDENTIFIER "lazygen_${_rel}" _owner)
  set(_stamp "${CMAKE_CURRENT_BINARY_DIR}/CMakeFiles/${_owner}.stamp")
  set(_depfile "${CMAKE_CURRENT_BINARY_DIR}/CMakeFiles/${_owner}.d")
  cmake_path(RELATIVE_PATH arg_SOURCE_YAML BASE_DIRECTORY "${CMAKE_SOURCE_DIR}" OUTPUT_VARIABLE _yaml_shown)

  set(_outputs ${_headers} ${_sources})
  set(_comment "lazygen: generating lazy tensor sources from ${_yaml_shown}")
  # This module's own file is an input too: installing or upgrading lazygen
  # rewrites it, so a new lazygen regenerates (files whose bytes stay are left alone).
  set(_inputs "${arg_SOURCE_YAML}" "${CMAKE_CURRENT_FUNCTION_LIST_FILE}")
  if(CMAKE_GENERATOR MATCHES "Ninja")
    # Ninja restats the outputs of a custom command: a file lazygen left
    # alone keeps its mtime, so what depends only on it is not rebuilt, and
    # the next build has nothing to do. The generated files being real
    # outputs, any target in any directory that lists one builds it.
    list(GET _outputs 0 _depfile_target)
    add_custom_command(
      OUTPUT ${_outputs}
      COMMAND ${_lazygen} ${_args} --depfile "${_depfile}" --depfile-target "${_depfile_target}"
      DEPENDS ${_inputs}
      DEPFILE "${_depfile}"
      WORKING_DIRECTORY "${CMAKE_CURRENT_BINARY_DIR}"
      COMMENT "${_comment}"
      VERBATIM)
    add_custom_target(${_owner} DEPENDS ${_outputs})
  else()
    # Makefiles cannot restat: a rule whose outputs are the generated files
    # would rebuild whatever uses them every time its inputs are newer, and
    # CMake gives the second and later outputs `touch` rules. So the
    # generator's output is a stamp in an owner target, and each generated
    # file gets a rule of its own that only orders after the owner: `make`
    # knows how to make every file a target lists (a missing file runs the
    # generator again), and a file keeps its mtime when its bytes stay.
    add_custom_command(
      OUTPUT "${_stamp}"
      COMMAND ${_lazygen} ${_args} --depfile "${_depfile}" --depfile-target "${_stamp}"
      COMMAND "${CMAKE_COMMAND}" -E touch "${_stamp}"
      DEPENDS ${_inputs}
      DEPFILE "${_depfile}"
      WORKING_DIRECTORY "${CMAKE_CURRENT_BINARY_DIR}"
      COMMENT "${_comment}"
      VERBATIM)
    add_custom_target(${_owner} DEPENDS "${_stamp}")
    foreach(_file IN LISTS _outputs)
      add_custom_command(
        OUTPUT "${_file}"
        COMMAND ${_lazygen} ${_args}
        DEPENDS ${_owner}
        WORKING_DIRECTORY "${CMAKE_CURRENT_BINARY_DIR}"
        COMMENT "${_comment}"
        VERBATIM)
    endforeach()
  endif()
  # `make clean` / `ninja clean` remove the generated files with the objects.
  set_property(TARGET ${_owner} APPEND PROPERTY ADDITIONAL_CLEAN_FILES ${_outputs})
  # The generated sources include each other through the include directory:
  # they carry it themselves, so any target in this directory compiles them.
  set_source_files_properties(${_outputs} PROPERTIES GENERATED TRUE)
  set_property(SOURCE ${_sources} APPEND PROPERTY INCLUDE_DIRECTORIES "${_include_dir}")

  if(arg_TARGET)
    set_source_files_properties(${_headers} ${_sources} TARGET_DIRECTORY ${arg_TARGET}
                                PROPERTIES GENERATED TRUE)
    target_sources(${arg_TARGET} PRIVATE ${_sources} ${_headers})
    target_include_directories(${arg_TARGET} PUBLIC "$<BUILD_INTERFACE:${_include_dir}>")
    add_dependencies(${arg_TARGET} ${_owner})
    if(arg_PRECOMPILE_HEADERS)
      # Every kernel and registration file parses torch's lazy-tensor headers
      # again (most of a small shard's compile time); precompiled once, they
      # are loaded instead. Only torch's headers: the generated ones change
      # with the yaml. The C++ sources of TARGET all get it (set
      # SKIP_PRECOMPILE_HEADERS on one that must not).
      set(_pch_headers torch/csrc/lazy/core/tensor.h torch/csrc/lazy/core/ir_builder.h
                       torch/csrc/lazy/core/lazy_graph_executor.h torch/csrc/lazy/core/shape_inference.h
                       ATen/Functions.h ATen/NativeFunctions.h ATen/native/CPUFallback.h torch/library.h)
      foreach(_kw NODE_BASE_HDR TENSOR_CLASS_HDR SHAPE_INFERENCE_HDR)
        if(arg_${_kw} MATCHES "^torch/")
          list(APPEND _pch_headers "${arg_${_kw}}")
        endif()
      endforeach()
      list(REMOVE_DUPLICATES _pch_headers)
      # For C++ sources only; $<ANGLE-R> because a bare '>' would end the expression.
      set(_pch_entries "")
      foreach(_h IN LISTS _pch_headers)
        list(APPEND _pch_entries "$<$<COMPILE_LANGUAGE:CXX>:<${_h}$<ANGLE-R>>")
      endforeach()
      target_precompile_headers(${arg_TARGET} PRIVATE ${_pch_entries})
    endif()
  endif()
  if(arg_OUT_SOURCES)
    set(${arg_OUT_SOURCES} ${_sources} PARENT_SCOPE)
  endif()
  if(arg_OUT_HEADERS)
    set(${arg_OUT_HEADERS} ${_headers} PARENT_SCOPE)
  endif()
  if(arg_OUT_TARGET)
    set(${arg_OUT_TARGET} ${_owner} PARENT_SCOPE)
  endif()
  if(arg_OUT_INCLUDE_DIR)
    set(${arg_OUT_INCLUDE_DIR} "${_include_dir}" PARENT_SCOPE)
  endif()
endfunction()
