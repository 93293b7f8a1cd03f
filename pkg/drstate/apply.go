package drstate

// Feeding the state from finished jobs: a job's "ocpdr_report" artifact
// holds the report the roles write (roles/dr_common/tasks/report.yml): its
// kind, finished time and one entry per PV with status, consistency, the
// recovery point, duration, bytes and reason. A failed job without a report
// is recorded against the PV its event named (Hint).

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// ReportKey is the artifact (set_stats key, or top-level key of the local
// runner's job result file) that carries a job's report.
const ReportKey = "ocpdr_report"

// RPOAnnotation is the annotation (on a PV, its PVC or VM as the event
// carries it) that sets a volume's recovery point objective: a Go duration
// ("90m", "4h").
const RPOAnnotation = "ocpv-dr.io/rpo"

// Job is a finished job as the state needs it.
type Job struct {
	ID        uint64
	Status    string // successful, failed, error, canceled
	Error     string
	Finished  time.Time
	Artifacts map[string]any
	Hint      Hint // from the job's event, when it was about one PV
}

// Hint is what a job's event says about the volume it is for.
type Hint struct {
	PV, Namespace, PVC string
	RPO                time.Duration
}

// Apply records a finished job and persists the volumes it changed.
func (s *State) Apply(j Job) error {
	if j.Finished.IsZero() {
		j.Finished = s.cfg.Now()
	}
	rep, _ := j.Artifacts[ReportKey].(map[string]any)
	entries := asMaps(rep["volumes"])
	kind := str(rep["kind"])
	if t, ok := parseTime(rep["finished"]); ok {
		j.Finished = t
	}
	s.mu.Lock()
	var changed []*Volume
	for _, e := range entries {
		if v := s.applyEntry(j, kind, e); v != nil {
			changed = append(changed, v)
		}
	}
	if len(entries) == 0 && j.Hint.PV != "" && j.Status != "successful" && j.Status != "canceled" {
		v := s.volume(j.Hint.PV)
		v.LastJob, v.LastStatus = j.ID, j.Status
		t := j.Finished.UTC()
		v.LastFailure, v.FailureReason = &t, firstNonEmpty(j.Error, "job "+j.Status)
		changed = append(changed, v)
	}
	if j.Hint.PV != "" {
		if v := s.vols[j.Hint.PV]; v != nil {
			s.applyHint(v, j.Hint)
		}
	}
	kept := s.keepReport(j, kind, rep)
	copies := make([]*Volume, len(changed))
	for i, v := range changed {
		c := *v
		c.VMs = slices.Clone(v.VMs)
		copies[i] = &c
	}
	s.mu.Unlock()
	return s.persist(j.ID, copies, kept)
}

// persist writes the volumes and the report a job changed.
func (s *State) persist(job uint64, vols []*Volume, rep *Report) error {
	if s.cfg.Store == nil {
		return nil
	}
	if len(vols) > 0 {
		if err := s.cfg.Store.Put(vols); err != nil {
			return fmt.Errorf("drstate: persist job %d: %w", job, err)
		}
	}
	if rs, ok := s.cfg.Store.(ReportStore); ok && rep != nil {
		if err := rs.PutReport(rep); err != nil {
			return fmt.Errorf("drstate: persist the %s report of job %d: %w", rep.Kind, job, err)
		}
	}
	return nil
}

// volume returns the named volume, creating it; s.mu is held.
func (s *State) volume(name string) *Volume {
	v := s.vols[name]
	if v == nil {
		v = &Volume{Name: name}
		s.vols[name] = v
	}
	return v
}

func (s *State) applyHint(v *Volume, h Hint) {
	if h.Namespace != "" {
		v.Namespace = h.Namespace
	}
	if h.PVC != "" {
		v.PVC = h.PVC
	}
	if h.RPO > 0 {
		v.RPOSeconds = h.RPO.Seconds()
	}
}

// applyEntry applies one PV entry of a report; s.mu is held.
func (s *State) applyEntry(j Job, kind string, e map[string]any) *Volume {
	name := str(e["name"])
	if name == "" {
		return nil
	}
	v := s.volume(name)
	v.LastJob, v.LastReport = j.ID, kind
	v.LastStatus = str(e["status"])
	s.applyIdentity(v, e)
	at := j.Finished.UTC()
	switch v.LastStatus {
	case "synced":
		v.LastSuccess = &at
		v.LastDurationSeconds, _ = num(e["duration"])
		if b, ok := num(e["bytes_transferred"]); ok {
			v.BytesTransferred = int64(b)
		}
		v.Consistency = firstNonEmpty(str(e["consistency"]), v.Consistency)
		if pt, ok := e["point"].(map[string]any); ok {
			if t, ok := parseTime(pt["time"]); ok {
				v.RecoveryPoint = &t
				v.Consistency = firstNonEmpty(str(pt["consistency"]), v.Consistency)
			}
		}
	case "failed", "discrepancy", "refused":
		v.LastFailure = &at
		v.FailureReason = firstNonEmpty(str(e["reason"]), v.LastStatus)
	default:
		s.cfg.Logger.Debug("report entry with an unknown status", zap.String("pv", name), zap.String("status", v.LastStatus))
	}
	return v
}

// applyIdentity takes the namespace, PVC, VMs and objective an entry names.
func (s *State) applyIdentity(v *Volume, e map[string]any) {
	v.Namespace = firstNonEmpty(str(e["namespace"]), v.Namespace)
	v.PVC = firstNonEmpty(str(e["pvc"]), v.PVC)
	if vms := asStrings(e["vms"]); len(vms) > 0 {
		slices.Sort(vms)
		v.VMs = slices.Compact(vms)
	}
	if d, err := ParseRPO(str(e["rpo"])); err == nil && d > 0 {
		v.RPOSeconds = d.Seconds()
	}
}

// ParseRPO parses an objective: a Go duration ("90m", "4h") or seconds.
func ParseRPO(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseFloat(s, 64); err == nil && n >= 0 {
		return time.Duration(n * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("drstate: RPO %q is not a duration such as 90m or 4h", s)
	}
	return d, nil
}

func str(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

func num(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case string:
		n, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		return n, err == nil
	}
	return 0, false
}

func parseTime(v any) (time.Time, bool) {
	s := str(v)
	if s == "" {
		return time.Time{}, false
	}
	// The roles append "Z" to isoformat() of a UTC time; accept both forms.
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999Z07:00Z", "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

func asMaps(v any) []map[string]any {
	l, _ := v.([]any)
	out := make([]map[string]any, 0, len(l))
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func asStrings(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, e := range l {
		if s, ok := e.(string); ok && s != "" {
			out = append(out, s)
		}
	}
	return out
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
