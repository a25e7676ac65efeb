# Version of the LazyGen CMake package: lazygen's own version, kept equal to
# pyproject.toml's by a test. The package is architecture independent.
# Before 1.0 a minor release may break, so a request matches the same 0.minor.
set(PACKAGE_VERSION "0.1.0")

set(PACKAGE_VERSION_COMPATIBLE FALSE)
set(PACKAGE_VERSION_EXACT FALSE)
string(REGEX MATCH "^[0-9]+\\.[0-9]+" _lazygen_series "${PACKAGE_VERSION}")

if(PACKAGE_FIND_VERSION_RANGE)
  # find_package(LazyGen 0.1...<0.3): inside the range is compatible.
  if(PACKAGE_VERSION VERSION_GREATER_EQUAL PACKAGE_FIND_VERSION_MIN
     AND ((PACKAGE_FIND_VERSION_RANGE_MAX STREQUAL "INCLUDE"
           AND PACKAGE_VERSION VERSION_LESS_EQUAL PACKAGE_FIND_VERSION_MAX)
          OR (PACKAGE_FIND_VERSION_RANGE_MAX STREQUAL "EXCLUDE"
              AND PACKAGE_VERSION VERSION_LESS PACKAGE_FIND_VERSION_MAX)))
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
  endif()
elseif(NOT DEFINED PACKAGE_FIND_VERSION OR PACKAGE_FIND_VERSION STREQUAL "")
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
else()
  if(PACKAGE_FIND_VERSION_MAJOR EQUAL 0 AND PACKAGE_FIND_VERSION_COUNT GREATER 1)
    set(_lazygen_wanted "${PACKAGE_FIND_VERSION_MAJOR}.${PACKAGE_FIND_VERSION_MINOR}")
  else()
    set(_lazygen_wanted "${PACKAGE_FIND_VERSION_MAJOR}")
    string(REGEX MATCH "^[0-9]+" _lazygen_series "${PACKAGE_VERSION}")
  endif()
  if(_lazygen_wanted STREQUAL "${_lazygen_series}"
     AND PACKAGE_FIND_VERSION VERSION_LESS_EQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
  endif()
  if(PACKAGE_FIND_VERSION VERSION_EQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
unset(_lazygen_series)
unset(_lazygen_wanted)
