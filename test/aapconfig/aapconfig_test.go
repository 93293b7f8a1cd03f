// aapconfig_test.go runs the AAP configuration playbook against the fake
// Controller and checks the objects it creates, idempotence and check mode.

package aapconfig

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/ocpv-dr/ocpv-dr/pkg/aap/aaptest"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

type config struct {
	Project struct {
		Name string `json:"name"`
	} `json:"ocpdr_aap_project"`
	Inventory struct {
		Name   string `json:"name"`
		Groups []struct {
			Name  string `json:"name"`
			Hosts []struct {
				Name string `json:"name"`
			} `json:"hosts"`
		} `json:"groups"`
	} `json:"ocpdr_aap_inventory"`
	JobTemplates []struct {
		Name     string `json:"name"`
		Playbook string `json:"playbook"`
		Event    bool   `json:"event"`
	} `json:"ocpdr_aap_job_templates"`
	Periodic string `json:"ocpdr_aap_periodic_template"`
	Failover string `json:"ocpdr_aap_failover_template"`
	Workflow struct {
		Name string `json:"name"`
	} `json:"ocpdr_aap_failover_workflow"`
	Rrule         string `json:"ocpdr_aap_periodic_rrule"`
	Drill         string `json:"ocpdr_aap_drill_template"`
	DrillWorkflow struct {
		Name string `json:"name"`
	} `json:"ocpdr_aap_drill_workflow"`
	DrillRrule     string `json:"ocpdr_aap_drill_rrule"`
	Readiness      string `json:"ocpdr_aap_readiness_template"`
	ReadinessRrule string `json:"ocpdr_aap_readiness_rrule"`
}

func loadConfig(t *testing.T) config {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "aap-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c config
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("examples/aap-config.yml: %v", err)
	}
	return c
}

// Secret values the test hands to the playbook; none may reach its output.
const (
	primaryToken = "sha256~primary-token-3f9a1c"
	drToken      = "sha256~dr-token-77be02"
	s3Access     = "AKIAOCPDRTEST0001"
	s3Secret     = "s3-secret-value-91d0"
	sshKey       = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAtestkey42\n-----END OPENSSH PRIVATE KEY-----\n"
)

type run struct {
	out     string
	changed int
	err     error
}

var recapChanged = regexp.MustCompile(`localhost\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0`)

func playbook(t *testing.T, c *aaptest.Server, keyFile string, extra ...string) run {
	t.Helper()
	root := repoRoot(t)
	args := append([]string{filepath.Join(root, "playbooks", "aap", "configure_controller.yml"),
		"-e", "@" + filepath.Join(root, "examples", "aap-config.yml"),
		"-e", `{"ocpdr_aap_credentials": {"machine": {"name": "OCP-DR NFS Hosts", "username": "root", "ssh_key_file": "` + keyFile + `"},
		  "primary_api": {"name": "OCP-DR Primary Cluster API", "host": "https://api.primary.example.com:6443", "token_env": "OCPDR_PRIMARY_API_TOKEN", "verify_ssl": true, "ca_cert_file": ""},
		  "dr_api": {"name": "OCP-DR DR Cluster API", "host": "https://api.dr.example.com:6443", "token_env": "OCPDR_DR_API_TOKEN", "verify_ssl": false, "ca_cert_file": ""},
		  "cluster_pair": {"name": "OCP-DR Cluster Pair", "credential_type": "OCP-DR Cluster Pair"},
		  "s3": {"name": "OCP-DR Backup Bucket", "access_key_env": "OCPDR_S3_ACCESS_KEY", "secret_key_env": "OCPDR_S3_SECRET_KEY"}}}`,
	}, extra...)
	cmd := exec.Command("ansible-playbook", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"ANSIBLE_CONFIG="+filepath.Join(root, "ansible.cfg"), "ANSIBLE_NOCOLOR=1", "ANSIBLE_CALLBACKS_ENABLED=",
		"CONTROLLER_HOST="+c.URL, "CONTROLLER_OAUTH_TOKEN=test-admin-token", "CONTROLLER_VERIFY_SSL=false",
		"OCPDR_PRIMARY_API_TOKEN="+primaryToken, "OCPDR_DR_API_TOKEN="+drToken,
		"OCPDR_S3_ACCESS_KEY="+s3Access, "OCPDR_S3_SECRET_KEY="+s3Secret)
	out, err := cmd.CombinedOutput()
	r := run{out: string(out), err: err}
	if m := recapChanged.FindStringSubmatch(r.out); m != nil {
		r.changed = atoi(m[1])
	} else if err == nil {
		t.Fatalf("no PLAY RECAP for localhost in output:\n%s", out)
	}
	for _, s := range []string{primaryToken, drToken, s3Secret, "testkey42", "test-admin-token"} {
		if strings.Contains(r.out, s) {
			t.Errorf("secret %q appears in the playbook output", s)
		}
	}
	return r
}

// same compares API values as the controller does: 7 and 7.0 are one id.
func same(a, b any) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func atoi(s string) int {
	n := 0
	for _, ch := range s {
		n = n*10 + int(ch-'0')
	}
	return n
}

func names(objs []aaptest.Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o["name"].(string))
	}
	sort.Strings(out)
	return out
}

func one(t *testing.T, c *aaptest.Server, coll string, m aaptest.Object) aaptest.Object {
	t.Helper()
	got := c.Find(coll, m)
	if len(got) != 1 {
		t.Fatalf("%s matching %v: %d objects, want 1", coll, m, len(got))
	}
	return got[0]
}

func TestConfigureController(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ansible-playbook")
	}
	if _, err := exec.LookPath("ansible-playbook"); err != nil {
		t.Fatal("ansible-playbook not installed: run make deps")
	}
	cfg := loadConfig(t)
	c := aaptest.NewConfigStore("test-admin-token")
	defer c.Close()
	key := filepath.Join(t.TempDir(), "id_nfs")
	if err := os.WriteFile(key, []byte(sshKey), 0o600); err != nil {
		t.Fatal(err)
	}

	first := playbook(t, c, key)
	if first.err != nil {
		t.Fatalf("first run failed: %v\n%s", first.err, first.out)
	}
	if first.changed == 0 {
		t.Fatalf("first run against an empty controller changed nothing:\n%s", first.out)
	}

	org := one(t, c, "organizations", aaptest.Object{"name": "Default"})["id"]
	proj := one(t, c, "projects", aaptest.Object{"name": cfg.Project.Name, "organization": org})
	if proj["scm_type"] != "git" || !strings.HasSuffix(proj["scm_url"].(string), ".git") {
		t.Errorf("project: %v", proj)
	}

	inv := one(t, c, "inventories", aaptest.Object{"name": cfg.Inventory.Name, "organization": org})
	var invVars map[string]any
	if err := json.Unmarshal([]byte(inv["variables"].(string)), &invVars); err != nil || invVars["ocpdr_primary_export_root"] == nil {
		t.Errorf("inventory variables %v: %v", inv["variables"], err)
	}
	for _, g := range cfg.Inventory.Groups {
		grp := one(t, c, "groups", aaptest.Object{"name": g.Name, "inventory": inv["id"]})
		var want []string
		for _, h := range g.Hosts {
			want = append(want, h.Name)
		}
		sort.Strings(want)
		if got := names(c.Associated("groups", grp["id"], "hosts")); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("group %s hosts %v, want %v", g.Name, got, want)
		}
	}

	// Credentials hold the secrets from the environment; the cluster pair
	// kubeconfigs carry each cluster's server and token.
	mach := one(t, c, "credentials", aaptest.Object{"name": "OCP-DR NFS Hosts"})
	if in := mach["inputs"].(map[string]any); strings.TrimSpace(fmt.Sprint(in["ssh_key_data"])) != strings.TrimSpace(sshKey) || in["username"] != "root" {
		t.Errorf("machine credential inputs wrong: username=%v key set=%v", in["username"], strings.TrimSpace(fmt.Sprint(in["ssh_key_data"])) == strings.TrimSpace(sshKey))
	}
	// No template uses per-cluster Bearer token credentials: none is created
	// unless ocpdr_aap_cluster_api_credentials asks for them.
	for _, name := range []string{"OCP-DR Primary Cluster API", "OCP-DR DR Cluster API"} {
		if got := c.Find("credentials", aaptest.Object{"name": name}); len(got) != 0 {
			t.Errorf("unused credential %s created (%d)", name, len(got))
		}
	}
	pairType := one(t, c, "credential_types", aaptest.Object{"name": "OCP-DR Cluster Pair"})
	inj, _ := json.Marshal(pairType["injectors"])
	if !strings.Contains(string(inj), `"ocpdr_primary_kubeconfig":"{{ tower.filename.primary }}"`) ||
		!strings.Contains(string(inj), `"template.dr":"{{ dr_kubeconfig }}"`) {
		t.Errorf("cluster pair injectors must reach the controller unrendered: %s", inj)
	}
	pair := one(t, c, "credentials", aaptest.Object{"name": "OCP-DR Cluster Pair", "credential_type": pairType["id"]})
	for field, want := range map[string][]string{
		"primary_kubeconfig": {"server: \"https://api.primary.example.com:6443\"", "token: \"" + primaryToken + "\""},
		"dr_kubeconfig":      {"server: \"https://api.dr.example.com:6443\"", "token: \"" + drToken + "\"", "insecure-skip-tls-verify: true"},
	} {
		kc, _ := pair["inputs"].(map[string]any)[field].(string)
		var parsed map[string]any
		if err := yaml.Unmarshal([]byte(kc), &parsed); err != nil || parsed["current-context"] == nil {
			t.Errorf("%s is not a kubeconfig (%v):\n%s", field, err, kc)
		}
		for _, w := range want {
			if !strings.Contains(kc, w) {
				t.Errorf("%s lacks %q:\n%s", field, w, kc)
			}
		}
	}
	s3 := one(t, c, "credentials", aaptest.Object{"name": "OCP-DR Backup Bucket"})
	if in := s3["inputs"].(map[string]any); in["username"] != s3Access || in["password"] != s3Secret {
		t.Errorf("S3 credential inputs wrong")
	}

	// Every job template: its playbook exists in the repository, the machine and
	// cluster-pair credentials are attached, variables are prompted; event
	// templates also prompt for limit and labels as EDA sends them.
	for _, jt := range cfg.JobTemplates {
		o := one(t, c, "job_templates", aaptest.Object{"name": jt.Name, "organization": org})
		if o["playbook"] != jt.Playbook || !same(o["project"], proj["id"]) || !same(o["inventory"], inv["id"]) {
			t.Errorf("%s: playbook %v project %v inventory %v", jt.Name, o["playbook"], o["project"], o["inventory"])
		}
		if _, err := os.Stat(filepath.Join(repoRoot(t), jt.Playbook)); err != nil {
			t.Errorf("%s: playbook %s missing from the repository", jt.Name, jt.Playbook)
		}
		creds := names(c.Associated("job_templates", o["id"], "credentials"))
		want := []string{"OCP-DR Cluster Pair", "OCP-DR NFS Hosts"}
		if jt.Name == cfg.Failover || jt.Name == cfg.Drill || jt.Name == cfg.Readiness { // they read the backups in S3
			want = []string{"OCP-DR Backup Bucket", "OCP-DR Cluster Pair", "OCP-DR NFS Hosts"}
		}
		if strings.Join(creds, ",") != strings.Join(want, ",") {
			t.Errorf("%s credentials %v, want %v", jt.Name, creds, want)
		}
		if o["ask_variables_on_launch"] != true || o["ask_limit_on_launch"] != jt.Event || o["ask_labels_on_launch"] != jt.Event {
			t.Errorf("%s prompts: variables %v limit %v labels %v", jt.Name, o["ask_variables_on_launch"], o["ask_limit_on_launch"], o["ask_labels_on_launch"])
		}
	}

	periodic := one(t, c, "job_templates", aaptest.Object{"name": cfg.Periodic})
	sched := one(t, c, "schedules", aaptest.Object{"unified_job_template": periodic["id"]})
	if rr, _ := sched["rrule"].(string); !strings.Contains(rr, "FREQ=HOURLY") || !strings.Contains(rr, "INTERVAL=1") || sched["enabled"] != true {
		t.Errorf("periodic schedule: rrule %v enabled %v", sched["rrule"], sched["enabled"])
	}

	wf := one(t, c, "workflow_job_templates", aaptest.Object{"name": cfg.Workflow.Name, "organization": org})
	if wf["survey_enabled"] != true || wf["ask_variables_on_launch"] != true {
		t.Errorf("workflow survey_enabled %v ask_variables_on_launch %v", wf["survey_enabled"], wf["ask_variables_on_launch"])
	}
	spec, _ := json.Marshal(c.Survey("workflow_job_templates", wf["id"]))
	if !strings.Contains(string(spec), `"variable":"backup_name"`) {
		t.Errorf("workflow survey lacks backup_name: %s", spec)
	}
	failoverJT := one(t, c, "job_templates", aaptest.Object{"name": cfg.Failover})
	node := one(t, c, "workflow_job_template_nodes", aaptest.Object{"workflow_job_template": wf["id"]})
	if !same(node["unified_job_template"], failoverJT["id"]) {
		t.Errorf("workflow node runs %v, want the failover job template %v", node["unified_job_template"], failoverJT["id"])
	}
	checkDrill(t, c, cfg, org)
	readiness := one(t, c, "job_templates", aaptest.Object{"name": cfg.Readiness})
	rsched := one(t, c, "schedules", aaptest.Object{"unified_job_template": readiness["id"]})
	if rsched["rrule"] != cfg.ReadinessRrule || !strings.Contains(cfg.ReadinessRrule, "FREQ=MINUTELY;INTERVAL=15") || rsched["enabled"] != true {
		t.Errorf("readiness schedule: rrule %v enabled %v, want %s enabled", rsched["rrule"], rsched["enabled"], cfg.ReadinessRrule)
	}

	// A second run changes nothing and writes nothing.
	before := len(c.Writes())
	second := playbook(t, c, key)
	if second.err != nil {
		t.Fatalf("second run failed: %v\n%s", second.err, second.out)
	}
	if second.changed != 0 || len(c.Writes()) != before {
		t.Errorf("second run: changed=%d, writes %v\n%s", second.changed, c.Writes()[before:], second.out)
	}

	// --check with a changed value reports the change and writes nothing.
	checked := playbook(t, c, key, "--check", "-e", `{"ocpdr_aap_periodic_rrule": "DTSTART;TZID=UTC:20260101T000000 RRULE:FREQ=HOURLY;INTERVAL=2"}`)
	if checked.err != nil {
		t.Fatalf("check run failed: %v\n%s", checked.err, checked.out)
	}
	if checked.changed == 0 || len(c.Writes()) != before {
		t.Errorf("check run: changed=%d, writes %v", checked.changed, c.Writes()[before:])
	}
}

// checkDrill: the drill workflow has its survey, runs the drill job template
// (which drills the failover namespaces) and is scheduled weekly.
func checkDrill(t *testing.T, c *aaptest.Server, cfg config, org any) {
	t.Helper()
	wf := one(t, c, "workflow_job_templates", aaptest.Object{"name": cfg.DrillWorkflow.Name, "organization": org})
	spec, _ := json.Marshal(c.Survey("workflow_job_templates", wf["id"]))
	for _, v := range []string{"dr_drill_backup_name", "dr_drill_recovery_point"} {
		if wf["survey_enabled"] != true || !strings.Contains(string(spec), `"variable":"`+v+`"`) {
			t.Errorf("drill workflow survey (enabled %v) lacks %s: %s", wf["survey_enabled"], v, spec)
		}
	}
	jt := one(t, c, "job_templates", aaptest.Object{"name": cfg.Drill})
	if ev, _ := jt["extra_vars"].(string); !strings.Contains(ev, "dr_drill_namespaces") {
		t.Errorf("drill job template extra_vars %q lack dr_drill_namespaces", jt["extra_vars"])
	}
	node := one(t, c, "workflow_job_template_nodes", aaptest.Object{"workflow_job_template": wf["id"]})
	if !same(node["unified_job_template"], jt["id"]) {
		t.Errorf("drill workflow node runs %v, want the drill job template %v", node["unified_job_template"], jt["id"])
	}
	sched := one(t, c, "schedules", aaptest.Object{"unified_job_template": wf["id"]})
	if rr, _ := sched["rrule"].(string); rr != cfg.DrillRrule || !strings.Contains(rr, "FREQ=WEEKLY") || sched["enabled"] != true {
		t.Errorf("drill schedule: rrule %v enabled %v, want %s enabled", sched["rrule"], sched["enabled"], cfg.DrillRrule)
	}
}

func TestConfigureControllerRefusesBadValues(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ansible-playbook")
	}
	c := aaptest.NewConfigStore("test-admin-token")
	defer c.Close()
	r := playbook(t, c, "", "-e", `{"ocpdr_aap_periodic_rrule": "DTSTART;TZID=UTC:20260101T000000 RRULE:FREQ=HOURLY"}`)
	if r.err == nil || !strings.Contains(r.out, "rrule with") {
		t.Fatalf("an rrule without INTERVAL was accepted:\n%s", r.out)
	}
	if w := c.Writes(); len(w) != 0 {
		t.Errorf("bad values still wrote to the controller: %v", w)
	}
}

// Every job and workflow template the project ships is named the same in the
// rulebook, the local runner's catalog, the AAP configuration and the README.
func TestTemplateNamesAgree(t *testing.T) {
	root := repoRoot(t)
	read := func(rel string) []byte {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var catalog struct {
		Jobs []struct {
			Name     string `json:"name"`
			Playbook string `json:"playbook"`
		} `json:"job_templates"`
		Workflows []struct {
			Name string `json:"name"`
		} `json:"workflow_job_templates"`
	}
	if err := yaml.Unmarshal(read("examples/job-templates.yml"), &catalog); err != nil {
		t.Fatal(err)
	}
	cat := map[string]string{}
	for _, j := range catalog.Jobs {
		cat[j.Name] = j.Playbook
	}
	for _, w := range catalog.Workflows {
		cat[w.Name] = "workflow"
	}
	cfg := loadConfig(t)
	aap := map[string]string{cfg.Workflow.Name: "workflow", cfg.DrillWorkflow.Name: "workflow"}
	for _, j := range cfg.JobTemplates {
		aap[j.Name] = j.Playbook
	}
	for name, pb := range aap {
		if cat[name] != pb {
			t.Errorf("%q: AAP configuration runs %q, catalog %q", name, pb, cat[name])
		}
	}
	for name := range cat {
		if _, ok := aap[name]; !ok {
			t.Errorf("%q is in the catalog but not in examples/aap-config.yml", name)
		}
	}

	var rulebook []struct {
		Rules []struct {
			Name   string                    `json:"name"`
			Action map[string]map[string]any `json:"action"`
		} `json:"rules"`
	}
	if err := yaml.Unmarshal(read("rulebooks/ocp_dr_events.yml"), &rulebook); err != nil {
		t.Fatal(err)
	}
	launched := 0
	for _, rs := range rulebook {
		for _, r := range rs.Rules {
			for kind, args := range r.Action {
				if kind != "run_job_template" && kind != "run_workflow_template" {
					continue
				}
				launched++
				if _, ok := cat[fmt.Sprint(args["name"])]; !ok {
					t.Errorf("rule %q launches %q, which the catalog does not have", r.Name, args["name"])
				}
			}
		}
	}
	if launched < 5 {
		t.Errorf("the shipped rulebook launches %d templates, want at least 5", launched)
	}

	readme := string(read("README.md"))
	for name := range cat {
		if !strings.Contains(readme, name) {
			t.Errorf("README.md does not mention %q", name)
		}
	}
}

// The execution environment lists every collection the playbooks and roles
// call by FQCN, and the decision environment the rulebook's source plugin.
func TestEnvironmentsListWhatTheContentUses(t *testing.T) {
	root := repoRoot(t)
	type env struct {
		Version      int `json:"version"`
		Dependencies struct {
			Galaxy struct {
				Collections []struct {
					Name string `json:"name"`
				} `json:"collections"`
			} `json:"galaxy"`
			Python []string `json:"python"`
		} `json:"dependencies"`
	}
	load := func(rel string) (env, map[string]bool) {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		var e env
		if err := yaml.Unmarshal(b, &e); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if e.Version != 3 {
			t.Errorf("%s: version %d, want ansible-builder v3", rel, e.Version)
		}
		have := map[string]bool{}
		for _, c := range e.Dependencies.Galaxy.Collections {
			have[c.Name] = true
		}
		return e, have
	}
	ee, eeHave := load("execution-environment.yml")
	fqcn := regexp.MustCompile(`(?m)^\s*-?\s*([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+:(?:\s|$)`)
	used := map[string]bool{}
	for _, dir := range []string{"playbooks", "roles"} {
		err := filepath.Walk(filepath.Join(root, dir), func(p string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() || !strings.HasSuffix(p, ".yml") {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range fqcn.FindAllStringSubmatch(string(b), -1) {
				if m[1] != "ansible.builtin" {
					used[m[1]] = true
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if !used["kubernetes.core"] || !used["amazon.aws"] {
		t.Fatalf("FQCN scan found too little (%v): the scan is broken", used)
	}
	for c := range used {
		if !eeHave[c] {
			t.Errorf("the content uses %s but execution-environment.yml does not list it", c)
		}
	}
	py := strings.Join(ee.Dependencies.Python, " ")
	for _, lib := range []string{"kubernetes", "boto3"} {
		if !strings.Contains(py, lib) {
			t.Errorf("execution-environment.yml lacks the Python package %s", lib)
		}
	}
	_, deHave := load("decision-environment.yml")
	rb, err := os.ReadFile(filepath.Join(root, "rulebooks", "ocp_dr_events.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^\s+([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+:\s*$`).FindAllStringSubmatch(string(rb), -1) {
		if !deHave[m[1]] {
			t.Errorf("the rulebook uses %s but decision-environment.yml does not list it", m[1])
		}
	}
}
