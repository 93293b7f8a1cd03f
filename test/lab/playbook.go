package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// PlaybookOptions change how PlaybookWith runs ansible-playbook. The zero
// value is what Playbook and MustPlaybook use.
type PlaybookOptions struct {
	// Root is the directory ansible-playbook runs in, whose ansible.cfg it
	// reads (ANSIBLE_CONFIG). Empty means RepoRoot().
	Root string
	// VarsFile is where the extra vars are written (and left for
	// inspection). Empty means a temporary file, removed after the run.
	VarsFile string
	// Callbacks keeps the callbacks ansible.cfg enables (callbacks_enabled,
	// e.g. profile_tasks). By default ANSIBLE_CALLBACKS_ENABLED= turns them
	// off, so that the output holds only the default callback's lines.
	Callbacks bool
	// Env is appended last to the environment, so it overrides the defaults.
	Env []string
}

// Playbook runs `ansible-playbook -i <lab inventory> <playbook> -e @<vars>
// <extra...>` from the repository root with ANSIBLE_CONFIG=<root>/ansible.cfg,
// ANSIBLE_NOCOLOR=1 and ANSIBLE_CALLBACKS_ENABLED= (no profile_tasks lines),
// the extra vars written as JSON to a temporary file. It returns the combined
// output and the command's error (an *exec.ExitError when the playbook fails).
// The process is killed when ctx is done.
func (l *Lab) Playbook(ctx context.Context, playbook string, vars map[string]any, extra ...string) (string, error) {
	return l.PlaybookWith(ctx, PlaybookOptions{}, playbook, vars, extra...)
}

// PlaybookWith is Playbook with options.
func (l *Lab) PlaybookWith(ctx context.Context, o PlaybookOptions, playbook string, vars map[string]any, extra ...string) (string, error) {
	root := o.Root
	if root == "" {
		var err error
		if root, err = RepoRoot(); err != nil {
			return "", err
		}
	}
	b, err := json.Marshal(vars)
	if err != nil {
		return "", fmt.Errorf("extra vars: %w", err)
	}
	vf := o.VarsFile
	if vf == "" {
		dir, err := os.MkdirTemp("", "ocpdr-playbook-")
		if err != nil {
			return "", fmt.Errorf("extra vars: %w", err)
		}
		defer os.RemoveAll(dir)
		vf = filepath.Join(dir, "vars.json")
	}
	if err := os.WriteFile(vf, b, 0o600); err != nil {
		return "", fmt.Errorf("extra vars: %w", err)
	}
	args := append([]string{"-i", l.Inventory, playbook, "-e", "@" + vf}, extra...)
	cmd := exec.CommandContext(ctx, "ansible-playbook", args...)
	cmd.Dir = root
	env := append(os.Environ(), "ANSIBLE_CONFIG="+filepath.Join(root, "ansible.cfg"), "ANSIBLE_NOCOLOR=1")
	if !o.Callbacks {
		env = append(env, "ANSIBLE_CALLBACKS_ENABLED=")
	}
	cmd.Env = append(env, o.Env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// MustPlaybook runs Playbook (killed when the test ends) and fails the test
// with the output's last 40 lines when the playbook fails. It returns the
// output. Call it from the test's goroutine, not from a Cleanup function
// (t.Context() is done by then).
func (l *Lab) MustPlaybook(t testing.TB, playbook string, vars map[string]any, extra ...string) string {
	t.Helper()
	out, err := l.Playbook(t.Context(), playbook, vars, extra...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", playbook, err, tailLines(out, 40))
	}
	return out
}

func tailLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
