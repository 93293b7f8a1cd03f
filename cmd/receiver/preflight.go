// `receiver preflight`: what the receiver knows about failover readiness,
// as an exit code for scripts: 0 ready, 1 not ready (each reason printed),
// 2 the receiver could not be asked.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ocpv-dr/ocpv-dr/pkg/drstate"
)

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func newPreflightCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "preflight",
		Short: "Check what the receiver knows about failover readiness (exit 0 ready, 1 not ready, 2 unknown)",
		Long: `preflight asks a running receiver (operator token) for its per-volume state and its newest failover
readiness facts, and prints one line per check: volumes are known, none failing, none older than its RPO
objective; then each fact of the newest readiness check (the "DR - Readiness Check" template,
playbooks/manual_dr/check_readiness.yml, every 15 minutes by the receiver's default schedule): the newest
completed backup and its age, S3, DR API and DR NFS reachable, storage classes present at DR, the fence
state; and that this check is not older than --max-age. The exit code is 0 when every check passes, 1 when
one fails (or no readiness check has reported), 2 when the receiver cannot be asked.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return &exitError{2, err}
			}
			vols, err := c.volumes(cmd.Context())
			if err != nil {
				return &exitError{2, err}
			}
			rd, err := c.readiness(cmd.Context())
			if err != nil {
				return &exitError{2, err}
			}
			maxAge, _ := cmd.Flags().GetDuration("max-age")
			failed := preflightReport(c.out, vols) + readinessReport(c.out, rd, maxAge)
			if failed > 0 {
				return &exitError{1, fmt.Errorf("not ready: %d check(s) failed", failed)}
			}
			return nil
		},
	}
	clientFlags(cmd)
	cmd.Flags().Duration("max-age", time.Hour, "a newest readiness check older than this fails")
	return cmd
}

func (c *client) volumes(ctx context.Context) ([]drstate.View, error) {
	resp, err := c.do(ctx, http.MethodGet, "/api/v1/volumes", nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("volumes (%d): %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	var out struct {
		Volumes []drstate.View `json:"volumes"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("volumes: %w", err)
	}
	return out.Volumes, nil
}

// readiness reads the newest readiness facts; nil when none reported.
func (c *client) readiness(ctx context.Context) (*drstate.Readiness, error) {
	resp, err := c.do(ctx, http.MethodGet, "/api/v1/readiness", nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, nil
	default:
		return nil, fmt.Errorf("readiness (%d): %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	var rd drstate.Readiness
	if err := json.Unmarshal(b, &rd); err != nil {
		return nil, fmt.Errorf("readiness: %w", err)
	}
	return &rd, nil
}

// readinessReport prints the facts of the newest readiness check and
// returns how many failed.
func readinessReport(w io.Writer, rd *drstate.Readiness, maxAge time.Duration) int {
	if rd == nil {
		fmt.Fprintln(w, "FAIL failover readiness: no readiness check has reported (run the \"DR - Readiness Check\" template)")
		return 1
	}
	failed := 0
	mark := func(ok bool) string {
		if ok {
			return "ok  "
		}
		failed++
		return "FAIL"
	}
	age := time.Duration(rd.AgeSeconds) * time.Second
	fmt.Fprintf(w, "%s readiness check of job %d, %s old (at most %s)\n", mark(age <= maxAge), rd.Job, age.Round(time.Second), maxAge)
	for _, c := range rd.Checks {
		fmt.Fprintf(w, "%s %s: %s\n", mark(c.OK), c.Title, c.Detail)
	}
	return failed
}

// preflightReport prints the checks and returns how many failed.
func preflightReport(w io.Writer, vols []drstate.View) int {
	var failing, breach []string
	for _, v := range vols {
		switch v.State {
		case drstate.StateFailing:
			failing = append(failing, v.Name+" ("+v.FailureReason+")")
		case drstate.StateBreach:
			breach = append(breach, v.Name)
		}
	}
	failed := 0
	check := func(ok bool, what, detail string) {
		mark := "ok  "
		if !ok {
			mark, failed = "FAIL", failed+1
		}
		fmt.Fprintf(w, "%s %s%s\n", mark, what, detail)
	}
	check(len(vols) > 0, "protected volumes known", fmt.Sprintf(": %d", len(vols)))
	check(len(failing) == 0, "no volume failing", list(failing))
	check(len(breach) == 0, "no DR copy older than its RPO objective", list(breach))
	return failed
}

func list(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return ": " + strings.Join(names, ", ")
}

// exitCode maps a command's error to the process exit code.
func exitCode(err error) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return 1
}
