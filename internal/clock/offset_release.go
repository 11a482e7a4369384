//go:build !evidenttest

package clock

// offset is zero in release builds: OffsetEnv is ignored.
const offset = 0
