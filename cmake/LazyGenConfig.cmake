# find_package(LazyGen CONFIG) entry point: defines lazygen_generate().
# `lazygen --cmake-dir` prints this folder (pass it as LazyGen_DIR or put it
# on CMAKE_PREFIX_PATH); in the wheel it is lazygen/cmake.
if(CMAKE_VERSION VERSION_LESS 3.20)
  set(LazyGen_FOUND FALSE)
  set(LazyGen_NOT_FOUND_MESSAGE "LazyGen needs CMake 3.20 or newer; this is ${CMAKE_VERSION}")
  return()
endif()
include("${CMAKE_CURRENT_LIST_DIR}/LazyGen.cmake")
