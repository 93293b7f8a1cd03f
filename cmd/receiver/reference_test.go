package main

import (
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ocpv-dr/ocpv-dr/pkg/cliconfig"
	"github.com/ocpv-dr/ocpv-dr/pkg/cliconfig/cliconfigtest"
	"github.com/ocpv-dr/ocpv-dr/pkg/clidoc"
	"github.com/ocpv-dr/ocpv-dr/pkg/drstate"
	"github.com/ocpv-dr/ocpv-dr/pkg/receiver"
)

var update = flag.Bool("update", false, "rewrite pkg/receiver/reference.md")

// The flag reference in pkg/receiver/reference.md is generated from the
// commands; this fails when they drift apart.
func TestReferenceUpToDate(t *testing.T) {
	const path = "../../pkg/receiver/reference.md"
	got := clidoc.Markdown(newRootCommand(), "RECEIVER")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run: go test ./cmd/receiver -run Reference -update)", err)
	}
	if string(want) != got {
		t.Fatalf("%s is stale: run `go test ./cmd/receiver -run Reference -update`", path)
	}
}

// A bad configuration fails at start with every problem listed.
func TestBadConfigListsEveryProblem(t *testing.T) {
	cmd := newRootCommand()
	cmd.SetArgs([]string{"serve", "--listen", "nope", "--rulebook", "/nonexistent.yml", "--max-concurrent-jobs", "0",
		"--hmac-secret-file", "/nonexistent-secret"})
	err := cmd.Execute()
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	for _, want := range []string{"/nonexistent-secret"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	cmd = newRootCommand()
	cmd.SetArgs([]string{"serve", "--listen", "nope", "--rulebook", "/nonexistent.yml", "--max-concurrent-jobs", "0",
		"--controller-url", "https://aap.example"})
	t.Setenv("RECEIVER_CONTROLLER_TOKEN", "")
	t.Setenv("EDA_CONTROLLER_TOKEN", "")
	err = cmd.Execute()
	for _, want := range []string{"--listen", "/nonexistent.yml", "--max-concurrent-jobs", "needs a token"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// RECEIVER_* environment variables and EDA_CONTROLLER_* names configure serve.
func TestEnvironment(t *testing.T) {
	t.Setenv("RECEIVER_MAX_CONCURRENT_JOBS", "3")
	t.Setenv("RECEIVER_READ_TIMEOUT", "5s")
	t.Setenv("RECEIVER_MAX_CONNECTIONS", "64")
	t.Setenv("RECEIVER_INSECURE_NO_AUTH", "true")
	t.Setenv("RECEIVER_WEBHOOK_TOKEN", "wt")
	t.Setenv("EDA_CONTROLLER_URL", "https://aap.example/api/controller/")
	t.Setenv("EDA_CONTROLLER_TOKEN", "ct")
	cmd := newServeCommand()
	v, err := cliconfig.NewViper(cmd, "RECEIVER")
	if err != nil {
		t.Fatal(err)
	}
	c, err := configFrom(v)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxConcurrentJobs != 3 || c.WebhookToken != "wt" || c.ControllerURL != "https://aap.example/api/controller/" || c.ControllerToken != "ct" {
		t.Fatalf("%+v", c)
	}
	if c.ReadTimeout != 5*time.Second || c.MaxConnections != 64 || !c.InsecureNoAuth {
		t.Fatalf("limits: %+v", c)
	}
}

// serve refuses a missing, placeholder or short webhook token, naming where
// the token comes from; --insecure-no-auth allows none.
func TestTokenPolicyAtStart(t *testing.T) {
	cases := []struct {
		name, token string
		args        []string
		want        string // "" : no token problem reported
	}{
		{"none", "", nil, "no webhook token: set RECEIVER_WEBHOOK_TOKEN or --webhook-token-file"},
		{"placeholder", receiver.PlaceholderWebhookToken, nil, "placeholder"},
		{"short", "tok", nil, "has 3 characters, at least 32"},
		{"none with --insecure-no-auth", "", []string{"--insecure-no-auth"}, ""},
		{"long enough", strings.Repeat("t", 32), nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("RECEIVER_WEBHOOK_TOKEN", c.token)
			cmd := newRootCommand()
			// --max-concurrent-jobs 0 keeps every case from starting.
			cmd.SetArgs(append([]string{"serve", "--rulebook", "testdata/count.yml", "--state-dir", t.TempDir(), "--max-concurrent-jobs", "0"}, c.args...))
			err := cmd.Execute()
			if err == nil || !strings.Contains(err.Error(), "--max-concurrent-jobs") {
				t.Fatalf("want a configuration error: %v", err)
			}
			if c.want == "" {
				if strings.Contains(err.Error(), "webhook token") {
					t.Errorf("token refused: %v", err)
				}
				return
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error lacks %q:\n%v", c.want, err)
			}
		})
	}
}

// Every flag of serve means the same on the command line, as RECEIVER_<FLAG>
// and in the --config file.
func TestEveryFlagThroughEverySource(t *testing.T) {
	cliconfigtest.CheckEveryFlag(t, newServeCommand, "RECEIVER")
}

// The shipped example configuration file parses, and its objectives are
// valid items of --rpo-namespace and --rpo-vm.
func TestExampleConfigFile(t *testing.T) {
	cmd := newServeCommand()
	if err := cmd.ParseFlags([]string{"--config", "../../examples/receiver-config.yml"}); err != nil {
		t.Fatal(err)
	}
	v, err := cliconfig.NewViper(cmd, "RECEIVER")
	if err != nil {
		t.Fatal(err)
	}
	c, err := configFrom(v)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.RPONamespaces, " ") != "vm-prod=1h vm-batch=8h" || strings.Join(c.RPOVMs, " ") != "vm-prod/db=15m" || c.DefaultRPO != 2*time.Hour {
		t.Errorf("objectives: namespaces %v, VMs %v, default %v", c.RPONamespaces, c.RPOVMs, c.DefaultRPO)
	}
	if _, err := drstate.ParseObjectives(c.RPONamespaces, false); err != nil {
		t.Error(err)
	}
	if vms, err := drstate.ParseObjectives(c.RPOVMs, true); err != nil || vms["vm-prod/db"] != 15*time.Minute {
		t.Errorf("VM objectives %v: %v", vms, err)
	}
}
