package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// service is a long-running product binary (receiver, forwarder, simulator)
// started for the flow, logging to its own file.
type service struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan error
	once sync.Once
}

func startService(name, logDir string, env []string, argv ...string) (*service, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("log dir: %w", err)
	}
	logPath := filepath.Join(logDir, name+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log for %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &service{name: name, log: logPath, cmd: cmd, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait(); lf.Close() }()
	return s, nil
}

// stop sends SIGTERM to the service's process group and waits a bounded
// time. Stopping a stopped service does nothing.
func (s *service) stop() {
	if s == nil {
		return
	}
	s.once.Do(func() {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.done
		}
	})
}

func (s *service) exited() error {
	select {
	case err := <-s.done:
		s.done <- err
		if err == nil {
			err = errors.New("exited")
		}
		return err
	default:
		return nil
	}
}

// waitTCP waits until addr accepts connections or the service dies.
func waitTCP(ctx context.Context, s *service, addr string) error {
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			return c.Close()
		}
		if err := s.exited(); err != nil {
			return fmt.Errorf("%s: %w (see %s)", s.name, err, s.log)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not listening on %s: %w (see %s)", s.name, addr, ctx.Err(), s.log)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// freePort returns a free TCP port on host.
func freePort(host string) (int, error) {
	ln, err := net.Listen("tcp", host+":0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// runLogged runs a command to completion in dir, saving its output to logPath.
func runLogged(ctx context.Context, dir, logPath string, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(logPath, out, 0o644)
	if err != nil {
		return string(out), fmt.Errorf("%s: %w (log %s)\n%s", filepath.Base(argv[0]), err, logPath, tail(string(out), 30))
	}
	return string(out), nil
}
