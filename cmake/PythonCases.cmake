# SPDX-License-Identifier: LGPL-2.1-or-later
# snap_python_cases(PREFIX FILE CLASS ENV [TIMEOUT SECONDS])
# One ctest entry PREFIX_NAME per "def test_NAME" of the unittest file FILE (class
# CLASS), so that `ctest -j` runs the cases in parallel and a new case cannot be
# left out of the suite; ENV is the entries' ENVIRONMENT list.
function(snap_python_cases prefix file class env)
  cmake_parse_arguments(ARG "" "TIMEOUT" "" ${ARGN})
  file(STRINGS ${file} defs REGEX "^    def test_")
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${file})
  foreach(line IN LISTS defs)
    string(REGEX REPLACE "^    def test_([A-Za-z0-9_]+).*" "\\1" name "${line}")
    add_test(NAME ${prefix}_${name} COMMAND Python3::Interpreter ${file} ${class}.test_${name})
    # a case that calls skipTest() (a missing optional package) shows as skipped
    set_tests_properties(${prefix}_${name} PROPERTIES ENVIRONMENT "${env}"
                         SKIP_REGULAR_EXPRESSION "OK \\(skipped=1\\)")
    if(ARG_TIMEOUT)
      set_tests_properties(${prefix}_${name} PROPERTIES TIMEOUT ${ARG_TIMEOUT})
    endif()
  endforeach()
endfunction()
