package runner

// The job result file: the local runner's counterpart of a Controller job's
// set_stats artifacts. Every job gets the extra variable ocpdr_job_result_file
// naming <job-log-dir>/job-<id>.result.json; a playbook that writes a JSON
// object there (its report under "ocpdr_report", see pkg/drstate) hands it
// back as the job's artifacts.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// ResultFileVar is the extra variable that names the job's result file.
const ResultFileVar = "ocpdr_job_result_file"

// maxResultBytes bounds the result file read back (a report of thousands of PVs fits).
const maxResultBytes = 32 << 20

// readResult reads the result file: nil, nil when the playbook wrote none.
func readResult(path string) (map[string]any, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxResultBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if len(b) > maxResultBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxResultBytes)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	return out, nil
}
