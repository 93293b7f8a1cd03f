//go:build !linux

package inbox

import "os"

func fdatasync(f *os.File) error { return f.Sync() }
