package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// exportImageSize is the apparent size of each NFS host's XFS image; the file
// is sparse, so only what the tests write takes disk space.
const exportImageSize = "16G"

// prepareExportRoot gives the site's NFS host its export root. As root with
// xfsprogs (CI, `make test`) it is an XFS filesystem with reflink on a loop
// file, like the XFS exports ocpv-dr captures on; otherwise a plain
// directory, and the lab says that reflink captures will report
// "unsupported" (copies labelled inconsistent).
func (l *Lab) prepareExportRoot(s *Site, logf func(string, ...any)) error {
	if err := os.MkdirAll(s.ExportRoot, 0o755); err != nil {
		return fmt.Errorf("export root: %w", err)
	}
	unmountExport(s.ExportRoot) // a stale mount of an earlier lab in the same dir
	if why := xfsUnavailable(); why != "" {
		logf("lab: %s export root is a plain directory (%s): reflink captures will be unsupported there", s.Name, why)
		return nil
	}
	img := filepath.Join(l.Dir, s.Name, "export.xfs")
	_ = os.Remove(img)
	if out, err := exec.Command("truncate", "-s", exportImageSize, img).CombinedOutput(); err != nil {
		return fmt.Errorf("export image %s: %w: %s", img, err, out)
	}
	if out, err := exec.Command("mkfs.xfs", "-q", "-m", "reflink=1", img).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.xfs %s: %w: %s", img, err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, s.ExportRoot).CombinedOutput(); err != nil {
		return fmt.Errorf("mount %s on %s: %w: %s", img, s.ExportRoot, err, out)
	}
	s.Reflink = true
	return nil
}

// xfsUnavailable says why the export root cannot be an XFS loop mount, or "".
func xfsUnavailable() string {
	if os.Geteuid() != 0 {
		return "not root: loop mounts need root"
	}
	if _, err := exec.LookPath("mkfs.xfs"); err != nil {
		return "mkfs.xfs not found: install xfsprogs (make deps)"
	}
	return ""
}

// unmountExport unmounts dir if something is mounted there (the loop device
// goes with it), lazily when a process still holds a file open.
func unmountExport(dir string) {
	// A process that just exited may still hold the filesystem for a moment
	// (EBUSY): retry for up to 3 s, then detach it lazily.
	for i := 0; i < 15 && mounted(dir); i++ {
		if exec.Command("umount", dir).Run() == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	if mounted(dir) {
		_ = exec.Command("umount", "-l", dir).Run()
	}
}

// mounted reports whether dir is a mount point (listed in /proc/self/mounts).
func mounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == dir {
			return true
		}
	}
	return false
}

// unmountExports unmounts both sites' export roots after the processes stop.
func (l *Lab) unmountExports() error {
	var errs []error
	for _, s := range []*Site{&l.Primary, &l.DR} {
		unmountExport(s.ExportRoot)
		if mounted(s.ExportRoot) {
			errs = append(errs, fmt.Errorf("export root %s is still mounted", s.ExportRoot))
		}
	}
	return errors.Join(errs...)
}
