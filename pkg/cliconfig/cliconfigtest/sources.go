// Package cliconfigtest checks that every flag of a command means the same
// whether it is given on the command line, as <PREFIX>_<FLAG> or in the
// --config file.
package cliconfigtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	yaml "go.yaml.in/yaml/v3"

	"github.com/ocpv-dr/ocpv-dr/pkg/cliconfig"
)

// sample is a valid non-default value for a flag, as command-line text and
// as a config-file value.
func sample(f *pflag.Flag) (string, any, bool) {
	switch f.Value.Type() {
	case "string":
		return "v-" + f.Name, "v-" + f.Name, true
	case "int", "int64", "uint", "uint64":
		return "7", 7, true
	case "float64":
		return "0.25", 0.25, true
	case "duration":
		return "7s", "7s", true
	case "bool":
		if f.DefValue == "true" {
			return "false", false, true
		}
		return "true", true, true
	case "stringSlice", "stringArray":
		return "a,b", []string{"a", "b"}, true
	}
	return "", nil, false
}

// CheckEveryFlag sets each flag of newCmd() through each source in turn and
// fails when a source gives a different value than the command line, or a
// flag type has no sample.
func CheckEveryFlag(t *testing.T, newCmd func() *cobra.Command, prefix string) {
	t.Helper()
	newCmd().Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "config" || f.Name == "help" || f.Name == "version" {
			return
		}
		text, fileVal, ok := sample(f)
		if !ok {
			t.Errorf("--%s: no sample for flag type %s", f.Name, f.Value.Type())
			return
		}
		t.Run(f.Name, func(t *testing.T) {
			want := valueVia(t, newCmd, prefix, f.Name, "flag", text, fileVal)
			if want == f.DefValue {
				t.Fatalf("sample %q did not change the default %q", text, f.DefValue)
			}
			for _, src := range []string{"env", "file"} {
				if got := valueVia(t, newCmd, prefix, f.Name, src, text, fileVal); got != want {
					t.Errorf("via %s: %q, on the command line: %q", src, got, want)
				}
			}
		})
	})
}

// valueVia applies one flag's sample through one source and returns the
// flag's value as viper reads it.
func valueVia(t *testing.T, newCmd func() *cobra.Command, prefix, name, src, text string, fileVal any) string {
	t.Helper()
	cmd := newCmd()
	switch src {
	case "flag":
		if err := cmd.Flags().Parse([]string{"--" + name + "=" + text}); err != nil {
			t.Fatal(err)
		}
	case "env":
		t.Setenv(cliconfig.EnvName(prefix, name), text)
	case "file":
		b, _ := yaml.Marshal(map[string]any{name: fileVal})
		p := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Flags().Parse([]string{"--config=" + p}); err != nil {
			t.Fatal(err)
		}
	}
	v, err := cliconfig.NewViper(cmd, prefix)
	if err != nil {
		t.Fatalf("via %s: %v", src, err)
	}
	if f := cmd.Flags().Lookup(name); strings.HasSuffix(f.Value.Type(), "Slice") || f.Value.Type() == "stringArray" {
		return fmt.Sprint(v.GetStringSlice(name))
	}
	return v.GetString(name)
}
