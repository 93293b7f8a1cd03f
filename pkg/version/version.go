// Package version holds build information set at link time.
package version

// Version is the release of this build, set with -ldflags "-X".
var Version = "dev"
