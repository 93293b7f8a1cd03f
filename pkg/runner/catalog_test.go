package runner

import (
	"path/filepath"
	"testing"
)

// The shipped catalog maps every job and workflow template name the project
// ships to its playbook.
func TestShippedCatalog(t *testing.T) {
	c, err := LoadCatalog("../../examples/job-templates.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err != nil {
		t.Errorf("catalog names playbooks that do not exist: %v", err)
	}
	root, _ := filepath.Abs("../..")
	if c.ProjectDir != root {
		t.Fatalf("project dir %s, want %s", c.ProjectDir, root)
	}
	jobs := map[string]string{
		"EDA - Sync NFS PV to DR":              "playbooks/event_driven/handle_nfs_pv_sync.yml",
		"EDA - Delete NFS PV from DR":          "playbooks/event_driven/handle_nfs_pv_delete.yml",
		"EDA - Sync VolumeSnapshot Metadata":   "playbooks/event_driven/handle_snapshot_sync.yml",
		"EDA - Delete VolumeSnapshot Metadata": "playbooks/event_driven/handle_snapshot_delete.yml",
		"EDA - Sync NFS Path to DR":            "playbooks/event_driven/handle_nfs_path_sync.yml",
		"DR - Periodic Storage Sync":           "playbooks/scheduled/execute_periodic_sync.yml",
		"DR - Readiness Check":                 "playbooks/manual_dr/check_readiness.yml",
		"DR - Execute Failover":                "playbooks/manual_dr/execute_failover.yml",
		"DR - Execute Drill":                   "playbooks/manual_dr/execute_drill.yml",
	}
	workflows := map[string]string{
		"One-Click Disaster Recovery Failover": "playbooks/manual_dr/execute_failover.yml",
		"DR - Drill":                           "playbooks/manual_dr/execute_drill.yml",
	}
	for _, tc := range []struct {
		got, want map[string]string
	}{{c.JobTemplates, jobs}, {c.WorkflowTemplates, workflows}} {
		if len(tc.got) != len(tc.want) {
			t.Errorf("catalog has %d entries, want %d: %v", len(tc.got), len(tc.want), tc.got)
		}
		for name, rel := range tc.want {
			if tc.got[name] != filepath.Join(root, rel) {
				t.Errorf("%q -> %q, want %s", name, tc.got[name], rel)
			}
		}
	}
}
