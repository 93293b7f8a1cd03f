package cliconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

func testCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "t"}
	f := cmd.Flags()
	f.String("config", "", "")
	f.StringSlice("storage-classes", []string{"nfs"}, "")
	f.Duration("poll-interval", 2*time.Second, "")
	f.Int("workers", 4, "")
	f.Bool("leader-elect", true, "")
	f.String("token-file", "", "")
	return cmd
}

func writeTemp(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Every source means what the flag means (issue 18.7): each case was
// reproduced with the viper binding this package used before.
func TestSourcesParseLikeFlags(t *testing.T) {
	cases := []struct {
		name, env, val, file string
		check                func(*Values) bool
		wantErr              string
	}{
		{name: "list from env splits on commas", env: "T_STORAGE_CLASSES", val: "nfs-a, nfs-b",
			check: func(v *Values) bool { return strings.Join(v.GetStringSlice("storage-classes"), "|") == "nfs-a|nfs-b" }},
		{name: "list from file", file: "storage-classes: [nfs-a, nfs-b]\n",
			check: func(v *Values) bool { return strings.Join(v.GetStringSlice("storage-classes"), "|") == "nfs-a|nfs-b" }},
		{name: "duration without unit refused", env: "T_POLL_INTERVAL", val: "5", wantErr: `T_POLL_INTERVAL="5"`},
		{name: "duration from env", env: "T_POLL_INTERVAL", val: "5s", check: func(v *Values) bool { return v.GetDuration("poll-interval") == 5*time.Second }},
		{name: "int that is not a number refused", env: "T_WORKERS", val: "abc", wantErr: "T_WORKERS"},
		{name: "bool word refused", env: "T_LEADER_ELECT", val: "yes", wantErr: "T_LEADER_ELECT"},
		{name: "bool false from env", env: "T_LEADER_ELECT", val: "false", check: func(v *Values) bool { return !v.GetBool("leader-elect") }},
		{name: "misspelled file key refused", file: "worker: 3\n", wantErr: `unknown key "worker"`},
		{name: "nested file key refused", file: "workers:\n  count: 3\n", wantErr: "unknown key"},
		{name: "duration without unit in file refused", file: "poll-interval: 5\n", wantErr: "poll-interval"},
		{name: "env beats file", env: "T_WORKERS", val: "9", file: "workers: 3\n", check: func(v *Values) bool { return v.GetInt("workers") == 9 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := testCommand()
			if c.env != "" {
				t.Setenv(c.env, c.val)
			}
			if c.file != "" {
				if err := cmd.Flags().Parse([]string{"--config", writeTemp(t, "c.yaml", c.file)}); err != nil {
					t.Fatal(err)
				}
			}
			v, err := NewViper(cmd, "T")
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !c.check(v) {
				t.Errorf("wrong value: %v", v.AllSettings())
			}
		})
	}
}

// A token file given on the command line beats a token in the environment;
// otherwise the environment beats a file named in the environment.
func TestSecretPrecedence(t *testing.T) {
	file := writeTemp(t, "token", "from-file\n")
	t.Setenv("T_TOKEN", "from-env")
	for _, c := range []struct {
		name string
		args []string
		env  string
		want string
	}{
		{"explicit flag beats env", []string{"--token-file", file}, "", "from-file"},
		{"env beats a file path from env", nil, file, "from-env"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := testCommand()
			if c.env != "" {
				t.Setenv("T_TOKEN_FILE", c.env)
			}
			if err := cmd.Flags().Parse(c.args); err != nil {
				t.Fatal(err)
			}
			v, err := NewViper(cmd, "T")
			if err != nil {
				t.Fatal(err)
			}
			got, err := v.Secret("token-file", "T_TOKEN")
			if err != nil || got != c.want {
				t.Errorf("Secret = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}
