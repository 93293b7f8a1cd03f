// The operator's client commands: `receiver launch` starts a template
// through POST /api/v1/launch and `receiver logs` prints (and follows) a
// job's log, both with the operator token.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ocpv-dr/ocpv-dr/pkg/cliconfig"
	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
	"github.com/ocpv-dr/ocpv-dr/pkg/receiver"
)

// client talks to a receiver's operator API.
type client struct {
	base, token string
	http        *http.Client
	out, errOut io.Writer
	poll        time.Duration
}

func clientFlags(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.String("url", "http://127.0.0.1:5000", "the receiver's address (or RECEIVER_URL)")
	fl.String("operator-token-file", "", "file holding the operator token (or RECEIVER_OPERATOR_TOKEN)")
}

func newClient(cmd *cobra.Command) (*client, error) {
	v, err := cliconfig.NewViper(cmd, "RECEIVER")
	if err != nil {
		return nil, err
	}
	tok, err := v.Secret("operator-token-file", "RECEIVER_OPERATOR_TOKEN")
	if err != nil {
		return nil, err
	}
	if tok == "" {
		return nil, errors.New("no operator token: set RECEIVER_OPERATOR_TOKEN or --operator-token-file")
	}
	return &client{base: strings.TrimRight(v.GetString("url"), "/"), token: tok, http: &http.Client{Timeout: 30 * time.Second},
		out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr(), poll: time.Second}, nil
}

func (c *client) do(ctx context.Context, method, path string, body []byte, hdr map[string]string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return resp, nil
}

// parseVars turns -e k=v into extra vars: v as JSON when it is valid JSON
// (true, 5, ["a"]), else as a string.
func parseVars(kvs []string) (map[string]any, error) {
	out := map[string]any{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("-e %q: want name=value", kv)
		}
		var x any
		if err := json.Unmarshal([]byte(v), &x); err == nil {
			out[k] = x
		} else {
			out[k] = v
		}
	}
	return out, nil
}

func newLaunchCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "launch TEMPLATE",
		Short: "Launch a job or workflow template through the receiver (operator token)",
		Long: `launch asks a running receiver (POST /api/v1/launch) to run a template of its catalog or Controller
with extra vars (-e name=value, the value read as JSON when it is JSON: true, 5, ["a"]; else a string).
The vars must be variables the catalog declares for the template. A failover or failback runs only with
--confirm and the receiver's site name (its --site-name). With --follow the job's log is printed until it
ends, and the exit code is 0 only when the job succeeded.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			kvs, _ := cmd.Flags().GetStringArray("extra-vars")
			vars, err := parseVars(kvs)
			if err != nil {
				return err
			}
			req := receiver.LaunchRequest{Template: args[0], ExtraVars: vars}
			req.Kind, _ = cmd.Flags().GetString("kind")
			req.Organization, _ = cmd.Flags().GetString("organization")
			req.Confirm, _ = cmd.Flags().GetString("confirm")
			id, err := c.launch(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "job %d launched\n", id)
			if follow, _ := cmd.Flags().GetBool("follow"); follow {
				return c.follow(cmd.Context(), id)
			}
			return nil
		},
	}
	clientFlags(cmd)
	fl := cmd.Flags()
	fl.StringArrayP("extra-vars", "e", nil, "extra variable name=value (repeatable)")
	fl.String("kind", "job_template", "job_template or workflow_job_template")
	fl.String("organization", "", "Controller organization (default Default)")
	fl.String("confirm", "", "the receiver's site name: required to launch a failover or failback")
	fl.Bool("follow", false, "print the job's log until it ends; exit 1 unless it succeeded")
	return cmd
}

func (c *client) launch(ctx context.Context, req receiver.LaunchRequest) (uint64, error) {
	b, _ := json.Marshal(req)
	resp, err := c.do(ctx, http.MethodPost, "/api/v1/launch", b, map[string]string{"Content-Type": "application/json"})
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusAccepted {
		return 0, fmt.Errorf("launch refused (%d): %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var out struct{ Job uint64 }
	if err := json.Unmarshal(body, &out); err != nil {
		return 0, fmt.Errorf("launch answer: %w", err)
	}
	return out.Job, nil
}

func newLogsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "logs JOB",
		Short: "Print a job's log from the receiver (operator token); --follow until the job ends",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("job %q: not a job id", args[0])
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			if follow, _ := cmd.Flags().GetBool("follow"); follow {
				return c.follow(cmd.Context(), id)
			}
			_, err = c.logFrom(cmd.Context(), id, 0)
			return err
		},
	}
	clientFlags(cmd)
	cmd.Flags().Bool("follow", false, "keep printing until the job ends; exit 1 unless it succeeded")
	return cmd
}

// logFrom prints the job's log from offset and returns the new offset.
func (c *client) logFrom(ctx context.Context, id uint64, offset int64) (int64, error) {
	resp, err := c.do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/jobs/%d/log", id), nil, map[string]string{"Range": fmt.Sprintf("bytes=%d-", offset)})
	if err != nil {
		return offset, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusPartialContent:
		if resp.StatusCode == http.StatusOK {
			offset = 0 // the server ignored the range
		}
		n, err := io.Copy(c.out, resp.Body)
		return offset + n, err
	case http.StatusRequestedRangeNotSatisfiable, http.StatusNotFound:
		return offset, nil // nothing new yet, or no log yet
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return offset, fmt.Errorf("log of job %d (%d): %s", id, resp.StatusCode, strings.TrimSpace(string(b)))
	}
}

func (c *client) jobRecord(ctx context.Context, id uint64) (*inbox.Job, error) {
	resp, err := c.do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/jobs/%d", id), nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("job %d (%d): %s", id, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	var j inbox.Job
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("job %d: %w", id, err)
	}
	return &j, nil
}

// follow prints the log until the job ended and its log is read; the
// error says how it ended unless it succeeded.
func (c *client) follow(ctx context.Context, id uint64) error {
	var offset int64
	for {
		j, err := c.jobRecord(ctx, id)
		if err != nil {
			return err
		}
		if offset, err = c.logFrom(ctx, id, offset); err != nil {
			return err
		}
		if j.Finished != nil {
			if offset, err = c.logFrom(ctx, id, offset); err != nil {
				return err
			}
			fmt.Fprintf(c.errOut, "job %d %s\n", id, j.Status)
			if j.Status != "successful" {
				return fmt.Errorf("job %d %s: %s", id, j.Status, j.Error)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(c.poll):
		}
	}
}
