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
		Long: `preflight asks a running receiver (operator token) for its per-volume state and prints one line per
check: volumes are known, none failing, none older than its RPO objective. The exit code is 0 when every
check passes, 1 when one fails, 2 when the receiver cannot be asked. It does not check the DR site itself
(S3, DR API, NFS, storage classes): the pre-failover playbook does.`,
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
			failed := preflightReport(c.out, vols)
			if failed > 0 {
				return &exitError{1, fmt.Errorf("not ready: %d check(s) failed", failed)}
			}
			return nil
		},
	}
	clientFlags(cmd)
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
