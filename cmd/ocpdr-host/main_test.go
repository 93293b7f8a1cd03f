// End-to-end tests of the binary's blocksync commands: the sender runs the
// receiver as its peer command (this test binary re-executed as main), as
// `ssh dr ocpdr-host blocksync receive ...` does in production.
package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocpv-dr/ocpv-dr/pkg/blockmover"
)

func TestMain(m *testing.M) {
	if os.Getenv("OCPDR_HOST_TEST_AS_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	t.Setenv("OCPDR_HOST_TEST_AS_MAIN", "1") // for the peer only
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestBlocksyncThroughPeerCommand(t *testing.T) {
	dir := t.TempDir()
	src, root := filepath.Join(dir, "src", "disk.img"), filepath.Join(dir, "dr")
	for _, d := range []string{filepath.Dir(src), filepath.Join(root, "pv")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Truncate(64 << 20)
	_, _ = f.WriteAt(bytes.Repeat([]byte("vm disk "), 8192), 10<<20)
	f.Close()

	cases := []struct {
		name, path, wantErr string
		method              string
	}{
		{"first sync", "pv/disk.img", "", blockmover.MethodFull},
		{"second sync", "pv/disk.img", "", blockmover.MethodDigestTable},
		{"path escaping the root", "../escape.img", "path refused", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := run(t, "blocksync", "send", "--source", src, "--",
				os.Args[0], "blocksync", "receive", "--root", root, "--path", c.path)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("want error %q, got %v", c.wantErr, err)
				}
				if _, err := os.Stat(filepath.Join(dir, "escape.img")); err == nil {
					t.Fatal("file written outside the root")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var res blockmover.Result
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("result %q: %v", out, err)
			}
			if res.Method != c.method || !res.Receiver.TableStored {
				t.Fatalf("result %+v", res)
			}
			a, _ := os.ReadFile(src)
			b, _ := os.ReadFile(filepath.Join(root, c.path))
			if !bytes.Equal(a, b) {
				t.Fatal("DR copy differs from the source")
			}
		})
	}
}

func TestArgumentsWithoutDashRefused(t *testing.T) {
	_, err := run(t, "blocksync", "send", "--source", "/x", "ssh", "host")
	if err == nil || !strings.Contains(err.Error(), "after --") {
		t.Fatalf("got %v", err)
	}
}
