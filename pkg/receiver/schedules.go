package receiver

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/dispatch"
	"github.com/ocpv-dr/ocpv-dr/pkg/schedule"
)

// validateSchedules checks the --schedules file and that something can run
// its templates.
func (c Config) validateSchedules() []error {
	if c.Schedules == "" {
		return nil
	}
	var errs []error
	if _, err := schedule.Load(c.Schedules); err != nil {
		errs = append(errs, fmt.Errorf("--schedules: %w", err))
	}
	if c.ControllerURL == "" && c.JobTemplates == "" {
		errs = append(errs, errors.New("--schedules needs --controller-url or --job-templates to run its templates"))
	}
	return errs
}

// startSchedules starts the scheduler of the --schedules file: its runs go
// through templates, the dispatcher's executor for run_job_template, and are
// recorded in the inbox; the last fire times are kept in
// <state-dir>/schedules.json. The returned stop interrupts runs in progress.
func startSchedules(cfg Config, in schedule.Store, templates dispatch.Executor, log *zap.Logger, reg prometheus.Registerer) (stop func(), err error) {
	if cfg.Schedules == "" {
		return func() {}, nil
	}
	entries, err := schedule.Load(cfg.Schedules)
	if err != nil {
		return nil, fmt.Errorf("receiver: %w", err)
	}
	if templates == nil {
		return nil, errors.New("receiver: --schedules: no executor for job templates (local runner unavailable, no --controller-url)")
	}
	s, err := schedule.New(schedule.Config{Entries: entries, Executor: templates, Store: in,
		StatePath: filepath.Join(cfg.StateDir, schedule.StateFile), Logger: log.Named("schedule"), Registerer: reg})
	if err != nil {
		return nil, fmt.Errorf("receiver: %w", err)
	}
	if err := s.Start(context.Background()); err != nil {
		return nil, fmt.Errorf("receiver: %w", err)
	}
	log.Info("schedules started", zap.String("file", cfg.Schedules), zap.Int("entries", len(entries)))
	return s.Stop, nil
}
