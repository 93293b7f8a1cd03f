package drstate

// The newest report of each kind (periodic-sync, event-sync, failover, drill,
// readiness, ...) as the jobs handed it back, for the status page and the
// failover readiness panel; one per kind, persisted beside the volumes.

import (
	"fmt"
	"regexp"
	"time"
)

// maxReportKinds bounds how many kinds of report are kept.
const maxReportKinds = 16

var kindPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)

// Report is the newest report of one kind.
type Report struct {
	Kind      string         `json:"kind"`
	Job       uint64         `json:"job"`
	JobStatus string         `json:"job_status"`
	Finished  time.Time      `json:"finished"`
	Body      map[string]any `json:"report"`
}

// ReportStore persists the newest reports; a Store may implement it.
type ReportStore interface {
	LoadReports() ([]*Report, error)
	PutReport(r *Report) error
}

func (s *State) loadReports() error {
	rs, ok := s.cfg.Store.(ReportStore)
	if !ok {
		return nil
	}
	reps, err := rs.LoadReports()
	for _, r := range reps {
		s.reports[r.Kind] = r
	}
	if err != nil {
		return fmt.Errorf("drstate: load reports: %w", err)
	}
	return nil
}

// keepReport makes rep the newest report of its kind unless a newer one is
// known; s.mu is held. It returns the report to persist, or nil.
func (s *State) keepReport(j Job, kind string, rep map[string]any) *Report {
	if rep == nil || !kindPattern.MatchString(kind) {
		return nil
	}
	old := s.reports[kind]
	if old == nil && len(s.reports) >= maxReportKinds {
		s.cfg.Logger.Warn("too many report kinds: report not kept")
		return nil
	}
	if old != nil && old.Finished.After(j.Finished) {
		return nil
	}
	r := &Report{Kind: kind, Job: j.ID, JobStatus: j.Status, Finished: j.Finished.UTC(), Body: rep}
	s.reports[kind] = r
	return r
}

// Reports returns the newest report of each kind (shared: do not modify).
func (s *State) Reports() map[string]*Report {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]*Report, len(s.reports))
	for k, r := range s.reports {
		out[k] = r
	}
	return out
}

// LatestReport returns the newest report of kind, or nil.
func (s *State) LatestReport(kind string) *Report {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.reports[kind]
}
