// Package testhook lets the end-to-end tests stop a binary at a named point
// of a multi-step operation, as a crash or a kill there would: binaries
// built with the evidenttest tag exit at once (status 137, no deferred
// cleanup) when EVIDENT_TEST_CRASH_AT names the point reached. Release
// builds ignore it: Crash does nothing.
package testhook

// CrashEnv names the crash point of an evidenttest build.
const CrashEnv = "EVIDENT_TEST_CRASH_AT"
