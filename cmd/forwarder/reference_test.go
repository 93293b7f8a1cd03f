package main

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/ocpv-dr/ocpv-dr/pkg/cliconfig/cliconfigtest"
	"github.com/ocpv-dr/ocpv-dr/pkg/clidoc"
)

var update = flag.Bool("update", false, "rewrite docs/reference")

// The configuration reference in docs/reference is generated from the
// command's flags; this fails when they drift apart.
func TestReferenceUpToDate(t *testing.T) {
	const path = "../../docs/reference/forwarder.md"
	got := clidoc.Markdown(newRootCommand(), "FORWARDER")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run: go test ./cmd/forwarder -update)", err)
	}
	if string(want) != got {
		t.Fatalf("%s is stale: run `go test ./cmd/forwarder -update`", path)
	}
}

// A bad configuration fails at start with every problem listed.
func TestBadConfigListsEveryProblem(t *testing.T) {
	cmd := newRootCommand()
	cmd.SetArgs([]string{"--webhook-url", "ftp://x", "--workers", "100", "--pv-label-selector", "a in (", "--kubeconfig", "/nonexistent"})
	err := cmd.Execute()
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	for _, want := range []string{"scheme must be http or https", "workers 100", "label selector", "/nonexistent"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// Every flag of both forwarder commands means the same on the command line,
// as FORWARDER_<FLAG> and in the --config file.
func TestEveryFlagThroughEverySource(t *testing.T) {
	cliconfigtest.CheckEveryFlag(t, newRootCommand, "FORWARDER")
	cliconfigtest.CheckEveryFlag(t, newWatchExportsCommand, "FORWARDER")
}
