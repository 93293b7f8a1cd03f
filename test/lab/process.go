// process.go is the one way tests run a product binary (receiver, forwarder,
// simulator) as a separate process: arguments and environment, output to a
// log file, a readiness wait that notices an early exit, and a stop that
// sends SIGTERM and escalates to SIGKILL after a grace period. StartReceiver
// puts the receiver's own flags on top of it.
package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// ProcessSpec says how to start a process.
type ProcessSpec struct {
	// Name names the process in errors.
	Name string
	// Argv is the program and its arguments.
	Argv []string
	// Env is added to the test's environment.
	Env []string
	// Log is the file stdout and stderr go to (truncated unless AppendLog).
	Log       string
	AppendLog bool
	// Group starts the process in its own process group and signals the
	// whole group, so children it started stop with it.
	Group bool
}

// Process is a running (or exited) process started by StartProcess. It dies
// with the test binary, even one that is killed.
type Process struct {
	Name string
	Log  string

	cmd      *exec.Cmd
	group    bool
	done     chan struct{}
	err      error // Wait's result, set before done closes
	stopOnce sync.Once
}

// StartProcess starts spec.Argv with its output in spec.Log.
func StartProcess(spec ProcessSpec) (*Process, error) {
	if len(spec.Argv) == 0 {
		return nil, errors.New("start process: empty argv")
	}
	if err := os.MkdirAll(filepath.Dir(spec.Log), 0o755); err != nil {
		return nil, fmt.Errorf("log dir for %s: %w", spec.Name, err)
	}
	mode := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if spec.AppendLog {
		mode = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	lf, err := os.OpenFile(spec.Log, mode, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log for %s: %w", spec.Name, err)
	}
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: spec.Group, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	p := &Process{Name: spec.Name, Log: spec.Log, cmd: cmd, group: spec.Group, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); lf.Close(); close(p.done) }()
	return p, nil
}

// Pid is the process id (the group id too when started with Group).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited returns nil while the process runs, and afterwards why it exited
// (an error even for a clean exit: a service is not meant to stop itself).
func (p *Process) Exited() error {
	select {
	case <-p.done:
		if p.err == nil {
			return errors.New("exited")
		}
		return p.err
	default:
		return nil
	}
}

// State is the exit state (nil while running).
func (p *Process) State() *os.ProcessState {
	select {
	case <-p.done:
		return p.cmd.ProcessState
	default:
		return nil
	}
}

// LogText is what the process has written so far.
func (p *Process) LogText() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// Signal sends sig to the process (its group when started with Group).
func (p *Process) Signal(sig syscall.Signal) error {
	pid := p.cmd.Process.Pid
	if p.group {
		pid = -pid
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s: %w", p.Name, err)
	}
	return nil
}

// Kill sends SIGKILL, unless the process has exited, and waits for the exit.
func (p *Process) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits up to grace for the exit, then SIGKILLs. It
// returns how long the process took to exit after SIGTERM, and an error when
// it outlived grace. Only the first call signals; later calls return at once.
func (p *Process) Stop(grace time.Duration) (took time.Duration, err error) {
	first := false
	p.stopOnce.Do(func() {
		first = true
		start := time.Now()
		_ = p.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			took = time.Since(start)
		case <-time.After(grace):
			err = fmt.Errorf("%s ignored SIGTERM for %s", p.Name, grace)
			p.Kill()
		}
	})
	if !first {
		<-p.done
	}
	return took, err
}

// WaitReady polls ready every interval until it returns nil, the process
// exits, or ctx ends; the error names the log to read.
func (p *Process) WaitReady(ctx context.Context, interval time.Duration, ready func() error) error {
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready (%v; see %s)", p.Name, p.cmd.ProcessState, p.Log)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w: last check: %v (see %s)", p.Name, ctx.Err(), err, p.Log)
		case <-time.After(interval):
		}
	}
}

// TCPReady is a readiness check: addr accepts connections.
func TCPReady(addr string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return fmt.Errorf("dial %s: %w", addr, err)
		}
		return c.Close()
	}
}

// HTTPReady is a readiness check: GET url answers 200.
func HTTPReady(url string) func() error {
	client := &http.Client{Timeout: 5 * time.Second}
	return func() error {
		resp, err := client.Get(url)
		if err != nil {
			return fmt.Errorf("get %s: %w", url, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("get %s: %s", url, resp.Status)
		}
		return nil
	}
}

// FreeAddr is host:port with a port free on host now.
func FreeAddr(host string) (string, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// ReceiverSpec says how to run `receiver serve`.
type ReceiverSpec struct {
	// Bin is the receiver binary.
	Bin string
	// Addr is the listen address; empty picks a free loopback port.
	Addr     string
	StateDir string
	Rulebook string
	// Token is the webhook token (RECEIVER_WEBHOOK_TOKEN).
	Token string
	// Args are further serve flags; Env further environment.
	Args []string
	Env  []string
	// Log, AppendLog and Group are as in ProcessSpec.
	Log       string
	AppendLog bool
	Group     bool
	// ReadyPath is the HTTP path that answers 200 once the receiver is
	// ready; empty waits for the port to accept connections.
	ReadyPath string
	// PollEvery is the readiness poll interval (default 50ms).
	PollEvery time.Duration
}

// Receiver is a running `receiver serve`.
type Receiver struct {
	*Process
	Addr string
	URL  string
}

// StartReceiver starts the receiver and waits, bounded by ctx, until it is
// ready; a receiver that does not get ready is killed and the error says why.
func StartReceiver(ctx context.Context, spec ReceiverSpec) (*Receiver, error) {
	addr := spec.Addr
	if addr == "" {
		var err error
		if addr, err = FreeAddr("127.0.0.1"); err != nil {
			return nil, err
		}
	}
	argv := append([]string{spec.Bin, "serve", "--listen", addr, "--state-dir", spec.StateDir, "--rulebook", spec.Rulebook}, spec.Args...)
	p, err := StartProcess(ProcessSpec{Name: "receiver", Argv: argv, Env: append([]string{"RECEIVER_WEBHOOK_TOKEN=" + spec.Token}, spec.Env...),
		Log: spec.Log, AppendLog: spec.AppendLog, Group: spec.Group})
	if err != nil {
		return nil, err
	}
	r := &Receiver{Process: p, Addr: addr, URL: "http://" + addr}
	ready := TCPReady(addr)
	if spec.ReadyPath != "" {
		ready = HTTPReady(r.URL + spec.ReadyPath)
	}
	interval := spec.PollEvery
	if interval == 0 {
		interval = 50 * time.Millisecond
	}
	if err := p.WaitReady(ctx, interval, ready); err != nil {
		p.Kill()
		return nil, err
	}
	return r, nil
}
