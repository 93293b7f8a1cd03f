package exportwatch

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// The fanotify backend marks the export root's whole filesystem once
// (FAN_MARK_FILESYSTEM) and asks the kernel to report the directory of each
// change as a file handle plus the entry's name (FAN_REPORT_DFID_NAME, Linux
// 5.9+, CAP_SYS_ADMIN). It needs no per-directory watch, so its cost does not
// grow with the number of directories; the price is that it sees every change
// on that filesystem and filters by path, so give the exports a filesystem
// of their own. Events feed the same debounce loop as inotify; a queue
// overflow (FAN_Q_OVERFLOW) triggers the same full rescan.

const fanMask = unix.FAN_CREATE | unix.FAN_DELETE | unix.FAN_MOVED_FROM | unix.FAN_MOVED_TO |
	unix.FAN_MODIFY | unix.FAN_CLOSE_WRITE | unix.FAN_ATTRIB | unix.FAN_DELETE_SELF | unix.FAN_ONDIR

// noAdder stands in for per-directory watches, which fanotify does not need.
type noAdder struct{}

func (noAdder) Add(string) error { return nil }

// RunFanotify watches like Run, with the fanotify backend.
func (w *Watcher) RunFanotify(ctx context.Context, out chan<- Change) error {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK|unix.FAN_REPORT_DFID_NAME, unix.O_RDONLY|unix.O_LARGEFILE)
	if err != nil {
		return fmt.Errorf("fanotify_init: %w (needs Linux 5.9+ and CAP_SYS_ADMIN; use the inotify backend)", err)
	}
	defer unix.Close(fd)
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, fanMask, unix.AT_FDCWD, w.cfg.Root); err != nil {
		return fmt.Errorf("fanotify_mark %s: %w", w.cfg.Root, err)
	}
	mount, err := unix.Open(w.cfg.Root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open export root: %w", err)
	}
	defer unix.Close(mount)
	events := make(chan fsnotify.Event, 4096)
	errs := make(chan error, 1)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &fanReader{fd: fd, mount: mount, root: w.cfg.Root, dirs: map[string]string{}, log: w.cfg.Logger}
	go r.run(rctx, events, errs)
	w.noWatches = true
	return w.loop(ctx, noAdder{}, events, errs, out)
}

type fanReader struct {
	fd, mount int
	root      string
	dirs      map[string]string // directory file handle -> path (cleared on directory moves)
	log       *zap.Logger
}

func (r *fanReader) run(ctx context.Context, events chan<- fsnotify.Event, errs chan<- error) {
	buf := make([]byte, 64<<10)
	for ctx.Err() == nil {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN}}, 200)
		if err != nil && !errors.Is(err, unix.EINTR) {
			r.log.Error("fanotify poll", zap.Error(err))
			return
		}
		if n == 0 {
			continue
		}
		got, err := unix.Read(r.fd, buf)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			r.log.Error("fanotify read", zap.Error(err))
			return
		}
		for _, ev := range r.parse(buf[:got]) {
			if ev.overflow {
				select {
				case errs <- fsnotify.ErrEventOverflow:
				default: // a rescan is already pending
				}
				continue
			}
			select {
			case events <- ev.Event:
			case <-ctx.Done():
				return
			}
		}
	}
}

type fanEvent struct {
	fsnotify.Event
	overflow bool
}

// parse decodes fanotify_event_metadata records with their DFID_NAME info.
func (r *fanReader) parse(b []byte) []fanEvent {
	var out []fanEvent
	const metaLen = int(unsafe.Sizeof(unix.FanotifyEventMetadata{}))
	for len(b) >= metaLen {
		evLen := int(binary.NativeEndian.Uint32(b[0:4]))
		if evLen < metaLen || evLen > len(b) {
			break
		}
		meta := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&b[0]))
		rec := b[meta.Metadata_len:evLen]
		b = b[evLen:]
		if meta.Fd >= 0 {
			_ = unix.Close(int(meta.Fd))
		}
		if meta.Mask&unix.FAN_Q_OVERFLOW != 0 {
			out = append(out, fanEvent{overflow: true})
			continue
		}
		path, ok := r.path(rec)
		if !ok || (path != r.root && !strings.HasPrefix(path, r.root+"/")) {
			continue
		}
		var op fsnotify.Op
		switch {
		case meta.Mask&unix.FAN_CREATE != 0 || meta.Mask&unix.FAN_MOVED_TO != 0:
			op = fsnotify.Create
		case meta.Mask&(unix.FAN_DELETE|unix.FAN_DELETE_SELF) != 0:
			op = fsnotify.Remove
		case meta.Mask&unix.FAN_MOVED_FROM != 0:
			op = fsnotify.Rename
		case meta.Mask&(unix.FAN_MODIFY|unix.FAN_CLOSE_WRITE) != 0:
			op = fsnotify.Write
		default:
			op = fsnotify.Chmod
		}
		if meta.Mask&unix.FAN_ONDIR != 0 && meta.Mask&(unix.FAN_MOVED_FROM|unix.FAN_MOVED_TO|unix.FAN_DELETE|unix.FAN_DELETE_SELF) != 0 {
			clear(r.dirs) // a directory moved: cached handle paths may be stale
		}
		out = append(out, fanEvent{Event: fsnotify.Event{Name: path, Op: op}})
	}
	return out
}

// path resolves a DFID_NAME info record to "<directory>/<name>".
func (r *fanReader) path(rec []byte) (string, bool) {
	for len(rec) >= 4 {
		typ, l := rec[0], int(binary.NativeEndian.Uint16(rec[2:4]))
		if l < 4 || l > len(rec) {
			return "", false
		}
		info := rec[:l]
		rec = rec[l:]
		if typ != unix.FAN_EVENT_INFO_TYPE_DFID_NAME && typ != unix.FAN_EVENT_INFO_TYPE_DFID {
			continue
		}
		// header(4) fsid(8) file_handle{bytes u32, type i32, f_handle[bytes]} name\0
		if len(info) < 20 {
			return "", false
		}
		hbytes := int(binary.NativeEndian.Uint32(info[12:16]))
		htype := int32(binary.NativeEndian.Uint32(info[16:20]))
		if 20+hbytes > len(info) {
			return "", false
		}
		handle := info[20 : 20+hbytes]
		dir, ok := r.dirs[string(handle)]
		if !ok {
			fd, err := unix.OpenByHandleAt(r.mount, unix.NewFileHandle(htype, handle), unix.O_PATH|unix.O_CLOEXEC)
			if err != nil {
				return "", false // deleted meanwhile, or on another filesystem
			}
			dir, err = os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
			_ = unix.Close(fd)
			if err != nil {
				return "", false
			}
			if len(r.dirs) > 65536 {
				clear(r.dirs)
			}
			r.dirs[string(handle)] = dir
		}
		name := ""
		if typ == unix.FAN_EVENT_INFO_TYPE_DFID_NAME {
			rest := info[20+hbytes:]
			if i := strings.IndexByte(string(rest), 0); i >= 0 {
				name = string(rest[:i])
			}
		}
		if name == "" || name == "." {
			return dir, true
		}
		return filepath.Join(dir, name), true
	}
	return "", false
}
