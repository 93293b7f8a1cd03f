package schedule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// StateFile is the name of the state file under the receiver's --state-dir.
const StateFile = "schedules.json"

// state is what survives a restart: for each enabled schedule, when it last
// fired (ran or was skipped), or when the receiver first saw it.
type state struct {
	Version   int                   `json:"version"`
	Schedules map[string]stateEntry `json:"schedules"`
}

type stateEntry struct {
	Last time.Time `json:"last"`
}

const stateVersion = 1

// readState reads the state file; a missing file is an empty state.
func readState(path string) (state, error) {
	st := state{Version: stateVersion, Schedules: map[string]stateEntry{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read %s: %w", path, err)
	}
	var got state
	if err := json.Unmarshal(b, &got); err != nil {
		return st, fmt.Errorf("decode %s: %w", path, err)
	}
	if got.Version != stateVersion {
		return st, fmt.Errorf("%s: version %d, want %d", path, got.Version, stateVersion)
	}
	for k, v := range got.Schedules {
		st.Schedules[k] = v
	}
	return st, nil
}

// writeState replaces the state file atomically: a temporary file in the same
// directory is written and synced, renamed over the old one, and the
// directory is synced, so a crash leaves the old state or the new one.
func writeState(path string, st state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode schedule state: %w", err)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write schedule state: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename there is nothing to remove
	if _, err := f.Write(append(b, '\n')); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
