package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procSet starts the lab's processes and records each PID in a file, so that
// a later `labctl down` stops exactly those processes, even after a lab-up
// that failed halfway.
type procSet struct {
	pidDir string
	detach bool
	cmds   map[string]*exec.Cmd
	exited map[string]chan struct{}
}

func newProcSet(pidDir string, detach bool) *procSet {
	return &procSet{pidDir: pidDir, detach: detach, cmds: map[string]*exec.Cmd{}, exited: map[string]chan struct{}{}}
}

// start runs argv with env added, logging to logFile, and records its PID.
func (p *procSet) start(name, logFile string, env []string, argv ...string) error {
	if err := os.MkdirAll(p.pidDir, 0o755); err != nil {
		return fmt.Errorf("pid dir: %w", err)
	}
	lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log file for %s: %w", name, err)
	}
	defer lf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if p.detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		// Die with the test binary, even if it is killed.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	p.cmds[name] = cmd
	done := make(chan struct{})
	p.exited[name] = done
	go func() { _ = cmd.Wait(); close(done) }()
	rec := fmt.Sprintf("%d %s\n", cmd.Process.Pid, argv[0])
	return writeFile(filepath.Join(p.pidDir, name+".pid"), []byte(rec), 0o644)
}

// exitedEarly reports whether a process started by this set has exited.
func (p *procSet) exitedEarly(name string) bool {
	ch, ok := p.exited[name]
	if !ok {
		return false
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

type pidRecord struct {
	name string
	pid  int
	exe  string
}

func (p *procSet) records() []pidRecord {
	entries, _ := os.ReadDir(p.pidDir)
	var out []pidRecord
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".pid") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(p.pidDir, e.Name()))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			continue
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil {
			continue
		}
		out = append(out, pidRecord{name: strings.TrimSuffix(e.Name(), ".pid"), pid: pid, exe: f[1]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// alive reports whether pid is still the recorded program (not a reused PID).
func (r pidRecord) alive() bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", r.pid))
	if err != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", r.pid))
	if err == nil {
		// A zombie is not alive.
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			return false
		}
	}
	// sshd rewrites its process title ("sshd: /usr/sbin/sshd -D ..."), so
	// look for the program anywhere in the command line.
	return bytes.Contains(b, []byte(r.exe))
}

func (p *procSet) status() (alive, dead []string) {
	for _, r := range p.records() {
		if r.alive() {
			alive = append(alive, r.name)
		} else {
			dead = append(dead, r.name)
		}
	}
	return alive, dead
}

// stopAll sends SIGTERM to every recorded process, waits up to grace, then
// SIGKILLs the rest, and removes the PID files.
func (p *procSet) stopAll(grace time.Duration) error {
	recs := p.records()
	for _, r := range recs {
		if r.alive() {
			_ = syscall.Kill(r.pid, syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		any := false
		for _, r := range recs {
			if r.alive() {
				any = true
			}
		}
		if !any {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var errs []error
	for _, r := range recs {
		if r.alive() {
			if err := syscall.Kill(r.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("kill %s (%d): %w", r.name, r.pid, err))
			}
		}
		_ = os.Remove(filepath.Join(p.pidDir, r.name+".pid"))
	}
	for _, ch := range p.exited {
		select {
		case <-ch:
		case <-time.After(2 * time.Second):
		}
	}
	return errors.Join(errs...)
}
