package drstate

// Failover readiness: the newest "readiness" report (roles/dr_readiness,
// playbooks/manual_dr/check_readiness.yml) as facts, each ok or failed with
// its age: the newest completed backup, S3, the DR API and DR NFS reachable,
// the storage classes present at DR, the fence state.

import (
	"slices"
	"time"
)

// KindReadiness is the kind of the readiness check's report.
const KindReadiness = "readiness"

// ReadinessChecks are the checks a complete readiness report has, in the
// order of the page; they are the fixed label set of the metrics.
var ReadinessChecks = []string{"backup", "s3", "dr_api", "dr_nfs", "storage_classes", "fence"}

// checkTitles are what a person reads for each check.
var checkTitles = map[string]string{
	"backup": "Newest completed backup", "s3": "S3 reachable", "dr_api": "DR API reachable",
	"dr_nfs": "DR NFS reachable", "storage_classes": "Storage classes present at DR", "fence": "Fence state",
}

// Check is one readiness fact.
type Check struct {
	Name       string    `json:"name"`
	Title      string    `json:"title"`
	OK         bool      `json:"ok"`
	Reported   bool      `json:"reported"` // false: the report lacks this check
	Detail     string    `json:"detail,omitempty"`
	At         time.Time `json:"at,omitzero"`
	AgeSeconds float64   `json:"age_seconds"`
}

// Readiness is the newest readiness report read at a given time.
type Readiness struct {
	Job        uint64    `json:"job"`
	JobStatus  string    `json:"job_status"`
	Finished   time.Time `json:"finished"`
	AgeSeconds float64   `json:"age_seconds"`
	Ready      bool      `json:"ready"` // every check reported and ok
	Checks     []Check   `json:"checks"`
}

// Readiness returns the newest readiness facts, or nil when no readiness
// check has reported.
func (s *State) Readiness() *Readiness {
	r := s.LatestReport(KindReadiness)
	if r == nil {
		return nil
	}
	return ReadinessOf(r, s.cfg.Now())
}

// ReadinessOf reads the facts of a readiness report at now.
func ReadinessOf(r *Report, now time.Time) *Readiness {
	out := &Readiness{Job: r.Job, JobStatus: r.JobStatus, Finished: r.Finished, AgeSeconds: max(0, now.Sub(r.Finished).Seconds()), Ready: true}
	got := map[string]Check{}
	var extra []Check
	for _, e := range asMaps(r.Body["checks"]) {
		c := Check{Name: str(e["name"]), Reported: true, Detail: str(e["detail"]), At: r.Finished}
		c.OK, _ = e["ok"].(bool)
		if t, ok := parseTime(e["at"]); ok {
			c.At = t
		}
		c.AgeSeconds = max(0, now.Sub(c.At).Seconds())
		if c.Name == "" {
			continue
		}
		c.Title = checkTitles[c.Name]
		if c.Title == "" {
			c.Title = c.Name
		}
		if slices.Contains(ReadinessChecks, c.Name) {
			got[c.Name] = c
		} else {
			extra = append(extra, c)
		}
	}
	for _, name := range ReadinessChecks {
		c, ok := got[name]
		if !ok {
			c = Check{Name: name, Title: checkTitles[name], Detail: "not reported by the readiness check", AgeSeconds: -1}
		}
		out.Checks = append(out.Checks, c)
	}
	out.Checks = append(out.Checks, extra...)
	for _, c := range out.Checks {
		out.Ready = out.Ready && c.OK
	}
	return out
}
