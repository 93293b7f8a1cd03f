// Package exportwatch watches an NFS export root on the primary NFS server and
// reports which PV directory changed, debounced per directory, so that data
// written by a VM reaches the DR site within seconds instead of at the next
// periodic sync.
//
// The backend is inotify (github.com/fsnotify/fsnotify) with one watch per
// directory, added as directories appear. A kernel queue overflow is never a
// silent loss: it turns into a rescan that reports every PV directory.
package exportwatch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Config controls a Watcher.
type Config struct {
	// Root is the export root; PV directories live below it.
	Root string
	// Depth is how many path levels below Root name a PV directory: 1 for
	// nfs-subdir (<root>/<ns>-<pvc>-<pv>) and csi-driver-nfs (<share>/<subdir>).
	Depth int
	// Quiet sends a directory once it has seen no change for this long.
	Quiet time.Duration
	// MaxDelay sends a directory at the latest this long after its first
	// unsent change, even while writes continue.
	MaxDelay time.Duration
	// Buffer is the fsnotify event buffer (0: unbuffered, as fsnotify's default).
	Buffer uint
	// Ignore skips PV directories whose base name has one of these prefixes
	// (e.g. archives).
	Ignore []string
	// Backend is "inotify" (default: one watch per directory, any kernel, no
	// privilege) or "fanotify" (one filesystem mark, Linux 5.9+, root).
	Backend string
	Logger  *zap.Logger
}

func (c *Config) setDefaults() {
	if c.Depth == 0 {
		c.Depth = 1
	}
	if c.Quiet == 0 {
		c.Quiet = 2 * time.Second
	}
	if c.MaxDelay == 0 {
		c.MaxDelay = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

// Validate lists every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Root == "" || !filepath.IsAbs(c.Root) {
		errs = append(errs, fmt.Errorf("export root %q must be an absolute path", c.Root))
	} else if st, err := os.Stat(c.Root); err != nil || !st.IsDir() {
		errs = append(errs, fmt.Errorf("export root %q is not a directory", c.Root))
	}
	if c.Depth < 0 || c.Depth > 8 {
		errs = append(errs, fmt.Errorf("depth %d out of range 1..8", c.Depth))
	}
	if c.Quiet < 0 || c.MaxDelay < 0 {
		errs = append(errs, errors.New("quiet period and max delay must not be negative"))
	}
	switch c.Backend {
	case "", "inotify", "fanotify":
	default:
		errs = append(errs, fmt.Errorf("backend %q: want inotify or fanotify", c.Backend))
	}
	if c.Quiet > 0 && c.MaxDelay > 0 && c.MaxDelay < c.Quiet {
		errs = append(errs, fmt.Errorf("max delay %s is shorter than the quiet period %s", c.MaxDelay, c.Quiet))
	}
	return errors.Join(errs...)
}

// Change reports that a PV directory changed.
type Change struct {
	Dir           string    // absolute path of the PV directory
	Changes       int       // file-system events seen since the last report
	FirstChangeAt time.Time // first unsent change
	LastChangeAt  time.Time
	Rescan        bool // reported because of a queue overflow or start-up rescan
}

type pending struct {
	first, last time.Time
	n           int
	rescan      bool
}

// Watcher watches one export root.
type Watcher struct {
	cfg     Config
	m       *metrics
	now     func() time.Time
	pend    map[string]*pending
	watched map[string]bool
	// noWatches: the backend (fanotify) needs no per-directory watches.
	noWatches bool
}

// New validates cfg and returns a Watcher. reg may be nil.
func New(cfg Config, reg prometheus.Registerer) (*Watcher, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("exportwatch config: %w", err)
	}
	root, err := filepath.EvalSymlinks(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("export root: %w", err)
	}
	cfg.Root = root
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Watcher{cfg: cfg, m: m, now: time.Now, pend: map[string]*pending{}, watched: map[string]bool{}}, nil
}

// PVDir maps a path below the root to its PV directory, or "" when the path
// is above the PV level, outside the root, or ignored.
func (w *Watcher) PVDir(path string) string {
	rel, err := filepath.Rel(w.cfg.Root, path)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return ""
	}
	parts := strings.Split(rel, string(filepath.Separator))
	if len(parts) < w.cfg.Depth {
		return ""
	}
	for _, p := range w.cfg.Ignore {
		if strings.HasPrefix(parts[w.cfg.Depth-1], p) {
			return ""
		}
	}
	return filepath.Join(append([]string{w.cfg.Root}, parts[:w.cfg.Depth]...)...)
}

// Run watches until ctx ends, sending debounced changes to out.
func (w *Watcher) Run(ctx context.Context, out chan<- Change) error {
	if w.cfg.Backend == "fanotify" {
		return w.RunFanotify(ctx, out)
	}
	var fw *fsnotify.Watcher
	var err error
	if w.cfg.Buffer > 0 {
		fw, err = fsnotify.NewBufferedWatcher(w.cfg.Buffer)
	} else {
		fw, err = fsnotify.NewWatcher()
	}
	if err != nil {
		return fmt.Errorf("inotify: %w (see fs.inotify.max_user_instances)", err)
	}
	defer fw.Close()
	return w.loop(ctx, fw, fw.Events, fw.Errors, out)
}

// adder adds an inotify watch for one directory.
type adder interface{ Add(path string) error }

func (w *Watcher) loop(ctx context.Context, fw adder, events <-chan fsnotify.Event, errs <-chan error, out chan<- Change) error {
	if w.noWatches {
		fw = nil
	}
	if err := w.addTree(fw, w.cfg.Root); err != nil {
		return err
	}
	w.cfg.Logger.Info("watching export root", zap.String("root", w.cfg.Root), zap.Int("depth", w.cfg.Depth), zap.Int("watches", len(w.watched)))
	// Changes made while no watcher ran are unknown: report every PV
	// directory once at start, so a restart loses nothing.
	w.markAll(true)

	tick := time.NewTicker(w.tickEvery())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return errors.New("inotify event channel closed")
			}
			w.handle(fw, ev)
		case err, ok := <-errs:
			if !ok {
				return errors.New("inotify error channel closed")
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.m.overflows.Inc()
				w.cfg.Logger.Warn("inotify queue overflow: rescanning the whole export root (raise fs.inotify.max_queued_events)")
				if err := w.addTree(fw, w.cfg.Root); err != nil {
					w.cfg.Logger.Error("rescan", zap.Error(err))
				}
				w.markAll(true)
				continue
			}
			w.cfg.Logger.Error("inotify", zap.Error(err))
		case <-tick.C:
			if err := w.flush(ctx, out); err != nil {
				return nil
			}
		}
	}
}

func (w *Watcher) tickEvery() time.Duration {
	d := w.cfg.Quiet / 4
	if d < 10*time.Millisecond {
		d = 10 * time.Millisecond
	}
	if d > 500*time.Millisecond {
		d = 500 * time.Millisecond
	}
	return d
}

func (w *Watcher) handle(fw adder, ev fsnotify.Event) {
	w.m.events.Inc()
	if ev.Has(fsnotify.Create) {
		if st, err := os.Lstat(ev.Name); err == nil && st.IsDir() {
			// Files may be created in the new directory before its watch
			// exists; the directory's own Create marks its PV changed, and
			// the sync copies whatever is there.
			if err := w.addTree(fw, ev.Name); err != nil {
				w.cfg.Logger.Warn("watch new directory", zap.String("dir", ev.Name), zap.Error(err))
			}
		}
	}
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		// The kernel drops watches of removed or moved directories.
		for d := range w.watched {
			if d == ev.Name || strings.HasPrefix(d, ev.Name+string(filepath.Separator)) {
				delete(w.watched, d)
			}
		}
		w.m.watches.Set(float64(len(w.watched)))
	}
	if ev.Op == fsnotify.Chmod {
		// atime/metadata-only noise from readers; rsync -a copies modes at
		// the next sync anyway.
		return
	}
	dir := w.PVDir(ev.Name)
	if dir == "" {
		return
	}
	w.mark(dir, false)
}

func (w *Watcher) mark(dir string, rescan bool) {
	now := w.now()
	p := w.pend[dir]
	if p == nil {
		p = &pending{first: now}
		w.pend[dir] = p
	}
	p.last = now
	p.n++
	p.rescan = p.rescan || rescan
	w.m.pending.Set(float64(len(w.pend)))
}

// markAll reports every PV directory, e.g. after an overflow.
func (w *Watcher) markAll(rescan bool) {
	for _, d := range w.pvDirs() {
		w.mark(d, rescan)
	}
}

func (w *Watcher) pvDirs() []string {
	var dirs []string
	_ = filepath.WalkDir(w.cfg.Root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() || p == w.cfg.Root {
			return nil
		}
		if pv := w.PVDir(p); pv == p {
			dirs = append(dirs, p)
			return fs.SkipDir
		}
		return nil
	})
	sort.Strings(dirs)
	return dirs
}

// flush sends every directory that is quiet long enough or waited too long.
func (w *Watcher) flush(ctx context.Context, out chan<- Change) error {
	now := w.now()
	var ready []string
	for d, p := range w.pend {
		if now.Sub(p.last) >= w.cfg.Quiet || now.Sub(p.first) >= w.cfg.MaxDelay {
			ready = append(ready, d)
		}
	}
	sort.Strings(ready)
	for _, d := range ready {
		p := w.pend[d]
		c := Change{Dir: d, Changes: p.n, FirstChangeAt: p.first, LastChangeAt: p.last, Rescan: p.rescan}
		select {
		case out <- c:
		case <-ctx.Done():
			return ctx.Err()
		}
		delete(w.pend, d)
		w.m.sent.Inc()
	}
	w.m.pending.Set(float64(len(w.pend)))
	return nil
}

// addTree adds a watch on dir and every directory below it (nothing when
// the backend needs no watches, fw == nil).
func (w *Watcher) addTree(fw adder, dir string) error {
	if fw == nil {
		return nil
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("walk %s: %w", p, err)
		}
		if !d.IsDir() || w.watched[p] {
			return nil
		}
		if err := fw.Add(p); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("watch %s: %w (raise fs.inotify.max_user_watches)", p, err)
		}
		w.watched[p] = true
		w.m.watches.Set(float64(len(w.watched)))
		return nil
	})
}
