// procs.go starts the flow's long-running product binaries (receiver,
// forwarder, simulator) through the lab's process helper, and runs one-shot
// commands with their output saved.
package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

// serviceGrace is how long a service has to exit after SIGTERM.
const serviceGrace = 10 * time.Second

// startService starts a service in its own process group (stopping it stops
// what it started), logging to logDir/name.log.
func startService(name, logDir string, env []string, argv ...string) (*lab.Process, error) {
	return lab.StartProcess(lab.ProcessSpec{Name: name, Argv: argv, Env: env, Log: filepath.Join(logDir, name+".log"), Group: true})
}

// stopService sends SIGTERM to the service's process group and waits a
// bounded time. Stopping a stopped (or never started) service does nothing.
func stopService(s *lab.Process) {
	if s != nil {
		_, _ = s.Stop(serviceGrace)
	}
}

// waitTCP waits until addr accepts connections or the service dies.
func waitTCP(ctx context.Context, s *lab.Process, addr string) error {
	return s.WaitReady(ctx, 100*time.Millisecond, lab.TCPReady(addr))
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
