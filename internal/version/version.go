// Package version holds the build version of the Evident binaries, set at
// link time with -ldflags "-X github.com/evident-dev/evident/internal/version.Version=...".
package version

// Version of this build.
var Version = "dev"
