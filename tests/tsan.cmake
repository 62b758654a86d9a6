# The ThreadSanitizer run (preset tsan, `make test-tsan`), included by tests/CMakeLists.txt when
# RSGATE_TSAN is on. Every test runs with TSAN_OPTIONS that stop a process at its first report
# (exit code 66) and write the report to build/tsan/tests/tsan-reports/report.<pid>. The
# environment reaches the programs the tests start (rsgate serve, rsgate-agent, rsgate
# connect), and several tests stop those by signal or ignore their exit status; so a fixture
# clears the directory before the first test and a last test fails when any process, a child
# included, left a report there, and prints it.
set(rsgate_tsan_reports ${CMAKE_CURRENT_BINARY_DIR}/tsan-reports)
set(rsgate_tsan_options
  "halt_on_error=1:exitcode=66:second_deadlock_stack=1:history_size=4:suppressions=${CMAKE_CURRENT_SOURCE_DIR}/tsan.supp:log_path=${rsgate_tsan_reports}/report")
add_custom_target(tsan_tests)

# Registers the cases of test binary `name` under label tsan, with the options above.
function(rsgate_tsan_register name)
  add_dependencies(tsan_tests ${name})
  catch_discover_tests(${name} TEST_PREFIX "${name}: " DISCOVERY_TIMEOUT 120 EXTRA_ARGS --warn NoTests
    PROPERTIES LABELS tsan ENVIRONMENT "TSAN_OPTIONS=${rsgate_tsan_options}" FIXTURES_REQUIRED tsan_reports)
endfunction()

add_test(NAME "tsan: clear the report directory"
         COMMAND ${CMAKE_COMMAND} -D MODE=clear -D DIR=${rsgate_tsan_reports} -P ${CMAKE_CURRENT_SOURCE_DIR}/tsan_reports.cmake)
add_test(NAME "tsan: no report from any process, children included"
         COMMAND ${CMAKE_COMMAND} -D MODE=check -D DIR=${rsgate_tsan_reports} -P ${CMAKE_CURRENT_SOURCE_DIR}/tsan_reports.cmake)
set_tests_properties("tsan: clear the report directory" PROPERTIES LABELS tsan FIXTURES_SETUP tsan_reports)
set_tests_properties("tsan: no report from any process, children included" PROPERTIES LABELS tsan
                     FIXTURES_CLEANUP tsan_reports)
