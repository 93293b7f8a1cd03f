// Package rulebookcmd implements `receiver check` and `receiver match`: test
// a rulebook change offline before deploying it.
package rulebookcmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/ocpv-dr/ocpv-dr/pkg/rulebook"
)

// loadVars reads --vars, or vars.yml beside the rulebook when it exists (as
// an activation's variables would be given).
func loadVars(rulebookPath, varsPath string) (map[string]any, error) {
	if varsPath == "" {
		beside := filepath.Join(filepath.Dir(rulebookPath), "vars.yml")
		if _, err := os.Stat(beside); err == nil {
			varsPath = beside
		}
	}
	if varsPath == "" {
		return map[string]any{}, nil
	}
	return rulebook.LoadVarsFile(varsPath)
}

// NewCheckCommand validates a rulebook.
func NewCheckCommand() *cobra.Command {
	var vars string
	cmd := &cobra.Command{
		Use:   "check RULEBOOK",
		Short: "Validate a rulebook; every problem is listed with its line",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := loadVars(args[0], vars)
			if err != nil {
				return err
			}
			rb, err := rulebook.LoadFile(args[0], v)
			if err != nil {
				return err
			}
			n := 0
			for _, rs := range rb.Rulesets {
				n += len(rs.Rules)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid (%d rulesets, %d enabled rules)\n", args[0], len(rb.Rulesets), n)
			return nil
		},
	}
	cmd.Flags().StringVar(&vars, "vars", "", "variables file (default: vars.yml beside the rulebook)")
	return cmd
}

// NewMatchCommand evaluates events offline and prints one JSON line per
// fired action.
func NewMatchCommand() *cobra.Command {
	var vars string
	var events []string
	var raw bool
	cmd := &cobra.Command{
		Use:   "match RULEBOOK --event FILE [--event FILE ...]",
		Short: "Evaluate events offline and print the actions that fire, one JSON object per line",
		Long: `match evaluates the event files in order against the rulebook and prints, for each action that
fires, {"ruleset","rule","action","args","matching_events"} on stdout (nothing else; no match prints
nothing). Time windows still open when the input ends (not_all timeouts, once_after throttles) end
then and print what they fire. Without --raw each file is a webhook POST body and is wrapped as the webhook does
({"payload": body, "meta": {...}}); with --raw the file is the event itself (source filters still run).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(events) == 0 {
				return errors.New("give at least one --event FILE")
			}
			v, err := loadVars(args[0], vars)
			if err != nil {
				return err
			}
			rb, err := rulebook.LoadFile(args[0], v)
			if err != nil {
				return err
			}
			s := rulebook.NewSession(rb, rulebook.Options{})
			enc := json.NewEncoder(cmd.OutOrStdout())
			for _, f := range events {
				b, err := os.ReadFile(f)
				if err != nil {
					return fmt.Errorf("event: %w", err)
				}
				var body any
				if err := json.Unmarshal(b, &body); err != nil {
					return fmt.Errorf("event %s: invalid JSON: %w", f, err)
				}
				var ev map[string]any
				if raw {
					m, ok := body.(map[string]any)
					if !ok {
						return fmt.Errorf("event %s: a raw event must be a JSON object", f)
					}
					ev = m
				} else {
					ev = rulebook.WrapWebhookEvent(body, "/"+filepath.Base(f), map[string]string{"Content-Type": "application/json"}, time.Now(), "")
				}
				fired, err := s.Process(ev)
				for _, a := range fired {
					if err := enc.Encode(map[string]any{"ruleset": a.Ruleset, "rule": a.Rule, "action": a.Action, "args": a.Args, "matching_events": a.MatchingEvents}); err != nil {
						return err
					}
				}
				if err != nil {
					return fmt.Errorf("event %s: %w", f, err)
				}
			}
			// The input ended: time windows still open (not_all timeouts,
			// once_after collections) end too, and fire as they would.
			if next, ok := s.NextDeadline(); ok {
				fired, err := s.Advance(next.Add(24 * 365 * time.Hour))
				for _, a := range fired {
					if err := enc.Encode(map[string]any{"ruleset": a.Ruleset, "rule": a.Rule, "action": a.Action, "args": a.Args, "matching_events": a.MatchingEvents}); err != nil {
						return err
					}
				}
				if err != nil {
					return fmt.Errorf("end of input: %w", err)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&vars, "vars", "", "variables file (default: vars.yml beside the rulebook)")
	cmd.Flags().StringArrayVar(&events, "event", nil, "event file (JSON), repeatable, evaluated in order")
	cmd.Flags().BoolVar(&raw, "raw", false, "events are not webhook bodies: do not wrap them")
	return cmd
}
