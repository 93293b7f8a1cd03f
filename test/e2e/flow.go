// Package e2e is ocpv-dr's end-to-end flow: the three modes running together
// on the lab. `make demo` runs it with narration against `make lab-up`'s lab;
// `make e2e` (and `make test`) run the same flow as a Go test that fails on
// the first step whose check does not hold.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

// Options configure one run of the flow.
type Options struct {
	Lab     *lab.Lab
	Root    string    // repository root
	Bin     string    // directory with forwarder, receiver and labsim
	WorkDir string    // receiver state, job logs, reports
	Out     io.Writer // narration for people
}

// Names used by the flow.
const (
	Namespace   = "demo-vm"
	VMName      = "demo-vm"
	DiskPV      = "pv-demo-vm-disk"
	DiskPVC     = "demo-vm-disk"
	ScratchPV   = "pv-demo-scratch"
	SnapshotVS  = "demo-vm-disk-snap"
	BackupName  = "demo-backup"
	webhookTok  = "demo-webhook-token-0123456789abcdef" // the receiver needs at least 32 characters
	stepTimeout = 3 * time.Minute
)

var (
	gvrVS = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshots"}
	gvrVM = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachines"}
)

// Flow holds the running pieces.
type Flow struct {
	Options
	primary, dr       *kubernetes.Clientset
	primaryDyn, drDyn dynamic.Interface
	receiverURL       string
	services          []*lab.Process
	watcher           *lab.Process
	watcherMetrics    string
	step              int
}

// New prepares a flow.
func New(opts Options) (*Flow, error) {
	f := &Flow{Options: opts}
	if f.Out == nil {
		f.Out = io.Discard
	}
	var err error
	if f.primary, f.primaryDyn, err = clients(&opts.Lab.Primary); err != nil {
		return nil, err
	}
	if f.dr, f.drDyn, err = clients(&opts.Lab.DR); err != nil {
		return nil, err
	}
	return f, os.MkdirAll(opts.WorkDir, 0o755)
}

func clients(s *lab.Site) (*kubernetes.Clientset, dynamic.Interface, error) {
	cfg, err := s.RESTConfig()
	if err != nil {
		return nil, nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("%s client: %w", s.Name, err)
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("%s client: %w", s.Name, err)
	}
	return cs, dc, nil
}

// Close stops the services the flow started.
func (f *Flow) Close() {
	for i := len(f.services) - 1; i >= 0; i-- {
		stopService(f.services[i])
	}
}

func (f *Flow) say(format string, args ...any) {
	fmt.Fprintf(f.Out, "    "+format+"\n", args...)
}

func (f *Flow) heading(title string) {
	f.step++
	fmt.Fprintf(f.Out, "\n==> %s\n", title)
}

// Steps lists the flow in order; each returns an error when its check fails.
func (f *Flow) Steps() []Step {
	return []Step{
		{"Start the receiver (local runner, shipped rulebook) and the forwarder against the primary site", f.StartServices},
		{"1. A VM with an NFS PV appears on the primary: the event replicates its files to DR", f.ReplicateNewPV},
		{"1b. The VM writes into its disk: watch-exports on the NFS host gets the data to DR within seconds", f.ReplicateDataWrites},
		{"2. A VolumeSnapshot becomes ready: its metadata is recorded at DR", f.RecordSnapshot},
		{"3. Files change behind the event path: the periodic sync finds and fixes it", f.PeriodicSync},
		{"4. A PV is deleted on the primary: its DR copy is archived, not destroyed", f.ArchiveDeletedPV},
		{"5. Disaster: fail over to DR from the OADP backup", f.Failover},
	}
}

// Step is one titled stage of the flow.
type Step struct {
	Title string
	Run   func(ctx context.Context) error
}

// Run runs every step in order and stops at the first failure.
func (f *Flow) Run(ctx context.Context) error {
	for _, s := range f.Steps() {
		f.heading(s.Title)
		start := time.Now()
		sctx, cancel := context.WithTimeout(ctx, stepTimeout)
		err := s.Run(sctx)
		cancel()
		if err != nil {
			fmt.Fprintf(f.Out, "    FAILED after %s: %v\n", time.Since(start).Round(time.Millisecond), err)
			return fmt.Errorf("%s: %w", s.Title, err)
		}
		fmt.Fprintf(f.Out, "    ok (%s)\n", time.Since(start).Round(time.Millisecond))
	}
	fmt.Fprintf(f.Out, "\nReports and logs are in %s\n", f.WorkDir)
	return nil
}

// eventually polls check until it returns nil or ctx ends.
func eventually(ctx context.Context, what string, check func() error) error {
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func writeRandomFile(path string, size int) error {
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("random: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("mkdir: %w", err)
	}
	return os.WriteFile(path, b, 0o644)
}

// sameTree compares two directory trees byte for byte.
func sameTree(a, b string) error {
	var diffs []string
	err := filepath.WalkDir(a, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(a, p)
		if d.IsDir() {
			return nil
		}
		x, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		y, err := os.ReadFile(filepath.Join(b, rel))
		if err != nil {
			diffs = append(diffs, rel+" missing at DR")
			return nil
		}
		if !bytes.Equal(x, y) {
			diffs = append(diffs, rel+" differs")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk %s: %w", a, err)
	}
	if len(diffs) > 0 {
		return errors.New(strings.Join(diffs, ", "))
	}
	return nil
}

func ensureNamespace(ctx context.Context, cs *kubernetes.Clientset, name string) error {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("namespace %s: %w", name, err)
	}
	return nil
}

func nfsPV(name, server, path string, claim *corev1.ObjectReference) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/part-of": "ocpv-dr-demo"}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              "nfs-dynamic",
			PersistentVolumeSource:        corev1.PersistentVolumeSource{NFS: &corev1.NFSVolumeSource{Server: server, Path: path}},
			ClaimRef:                      claim,
		},
	}
}

// runAnsible runs ansible-playbook from the repository root with the lab's
// inventory and extra vars passed as a JSON file (lab.PlaybookWith), keeping
// the vars file and the output in the work directory; ansible.cfg's callbacks
// (profile_tasks) stay on.
func (f *Flow) runAnsible(ctx context.Context, name, playbook string, vars map[string]any) (string, error) {
	logPath := filepath.Join(f.WorkDir, name+".log")
	out, err := f.Lab.PlaybookWith(ctx, lab.PlaybookOptions{
		Root:      f.Root,
		VarsFile:  filepath.Join(f.WorkDir, name+"-vars.json"),
		Callbacks: true,
		Env:       []string{"ANSIBLE_FORCE_COLOR=0"},
	}, playbook, vars)
	_ = os.WriteFile(logPath, []byte(out), 0o644)
	if err != nil {
		return out, fmt.Errorf("%s failed: %w (log: %s)\n%s", playbook, err, logPath, tail(out, 40))
	}
	return out, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func getJSON(ctx context.Context, url, token string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

func nestedString(u *unstructured.Unstructured, fields ...string) string {
	s, _, _ := unstructured.NestedString(u.Object, fields...)
	return s
}

type jobView struct {
	Name     string     `json:"name"`
	Status   string     `json:"status"`
	Lane     string     `json:"lane"`
	Finished *time.Time `json:"finished"`
	Duration float64    `json:"duration_seconds"`
	Lag      float64    `json:"replication_lag_seconds"`
}

// jobs returns the receiver's recent jobs (GET /api/v1/jobs).
func (f *Flow) jobs(ctx context.Context) ([]jobView, error) {
	var out struct {
		Jobs []jobView `json:"jobs"`
	}
	err := getJSON(ctx, f.receiverURL+"/api/v1/jobs?limit=1000", webhookTok, &out)
	return out.Jobs, err
}

// waitQuiet waits until the receiver has no pending event and no running
// job, twice in a row a second apart.
func (f *Flow) waitQuiet(ctx context.Context) error {
	quiet := 0
	return eventually(ctx, "receiver idle", func() error {
		var ev struct {
			Pending int `json:"pending"`
		}
		if err := getJSON(ctx, f.receiverURL+"/api/v1/events?limit=1", webhookTok, &ev); err != nil {
			return err
		}
		jobs, err := f.jobs(ctx)
		if err != nil {
			return err
		}
		busy := ev.Pending
		for _, j := range jobs {
			if j.Finished == nil {
				busy++
			}
		}
		if busy > 0 {
			quiet = 0
			return fmt.Errorf("%d events or jobs in flight", busy)
		}
		if quiet++; quiet < 4 {
			return errors.New("settling")
		}
		return nil
	})
}
