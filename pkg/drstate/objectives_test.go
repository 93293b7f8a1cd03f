// Objectives by configuration: a PV's annotation beats the strictest
// objective of its VMs, which beats its namespace's, which beats the default;
// the age of the DR copy against the chosen one makes the breach.
package drstate

import (
	"strings"
	"testing"
	"time"
)

func TestObjectivePrecedence(t *testing.T) {
	now := t0.Add(3 * time.Hour)
	cfg := Config{DefaultRPO: 4 * time.Hour, Now: func() time.Time { return now },
		NamespaceObjectives: map[string]time.Duration{"vms": 2 * time.Hour, "db": 30 * time.Minute},
		VMObjectives:        map[string]time.Duration{"vms/web": time.Hour, "vms/api": 90 * time.Minute, "db/slow": 5 * time.Hour}}
	// Every volume's DR copy is 150 minutes old.
	entry := func(ns, vms string) string {
		return `[{"name":"pv","status":"synced","namespace":"` + ns + `","vms":[` + vms + `],"point":{"time":"2026-12-01T10:30:00Z"}}]`
	}
	cases := []struct {
		name, ns, vms string
		annotation    time.Duration
		objective     float64
		from          string
		breach        bool
	}{
		{name: "annotation beats VM and namespace", ns: "vms", vms: `"vms/web"`, annotation: 3 * time.Hour, objective: 3 * 3600, from: "annotation"},
		{name: "strictest VM beats namespace", ns: "vms", vms: `"vms/api","vms/web"`, objective: 3600, from: "vm", breach: true},
		{name: "VM objective may be longer than the namespace's", ns: "db", vms: `"db/slow"`, objective: 5 * 3600, from: "vm"},
		{name: "namespace when no VM has one", ns: "vms", vms: `"vms/other"`, objective: 2 * 3600, from: "namespace", breach: true},
		{name: "default elsewhere", ns: "apps", vms: `"apps/x"`, objective: 4 * 3600, from: "default"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Apply(Job{ID: 1, Status: "successful", Hint: Hint{PV: "pv", RPO: c.annotation},
				Artifacts: report(t, now.Add(-time.Minute), entry(c.ns, c.vms))}); err != nil {
				t.Fatal(err)
			}
			v := s.Views()[0]
			if v.ObjectiveSec != c.objective || v.ObjectiveFrom != c.from || v.Breach != c.breach {
				t.Errorf("objective %v from %q breach %v, want %v from %q breach %v", v.ObjectiveSec, v.ObjectiveFrom, v.Breach,
					c.objective, c.from, c.breach)
			}
			if _, breach := s.Counts(); (breach == 1) != c.breach {
				t.Errorf("counted in breach: %d", breach)
			}
		})
	}
}

func TestParseObjectives(t *testing.T) {
	cases := []struct {
		items []string
		vm    bool
		want  map[string]time.Duration
		err   string
	}{
		{items: []string{"vms=30m", "db = 2h"}, want: map[string]time.Duration{"vms": 30 * time.Minute, "db": 2 * time.Hour}},
		{items: []string{"vms/web=15m", "db/pg=900"}, vm: true, want: map[string]time.Duration{"vms/web": 15 * time.Minute, "db/pg": 15 * time.Minute}},
		{items: []string{"vms"}, err: "not key=duration"},
		{items: []string{"vms=soon"}, err: "not a duration"},
		{items: []string{"vms=0"}, err: "must be positive"},
		{items: []string{"web=15m"}, vm: true, err: "namespace/name"},
		{items: []string{"a/b/c=15m"}, vm: true, err: "namespace/name"},
		{items: []string{"vms/web=15m"}, err: "has no '/'"},
	}
	for _, c := range cases {
		got, err := ParseObjectives(c.items, c.vm)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: error %v, want %q", c.items, err, c.err)
			}
			continue
		}
		if err != nil || len(got) != len(c.want) {
			t.Fatalf("%v: %v %v", c.items, got, err)
		}
		for k, d := range c.want {
			if got[k] != d {
				t.Errorf("%v: %s=%v, want %v", c.items, k, got[k], d)
			}
		}
	}
}
