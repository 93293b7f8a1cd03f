package labbench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

// sink is the receiver stand-in: it answers 200 at once and records when
// each PV's bench sequence label arrived.
type sink struct {
	mu      sync.Mutex
	arrived map[string]time.Time // "pv/seq" -> time
	count   atomic.Int64
	srv     *httptest.Server
}

func newSink() *sink {
	s := &sink{arrived: map[string]time.Time{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		now := time.Now()
		var p struct {
			Resource struct {
				Metadata struct {
					Name   string            `json:"name"`
					Labels map[string]string `json:"labels"`
				} `json:"metadata"`
			} `json:"resource"`
		}
		_ = json.Unmarshal(b, &p)
		if seq := p.Resource.Metadata.Labels["bench-seq"]; seq != "" {
			s.mu.Lock()
			s.arrived[p.Resource.Metadata.Name+"/"+seq] = now
			s.mu.Unlock()
		}
		s.count.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	return s
}

func (s *sink) at(key string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.arrived[key]
	return t, ok
}

func startForwarder(b *testing.B, bin string, l *lab.Lab, url, class string, env ...string) *exec.Cmd {
	b.Helper()
	args := []string{"--kubeconfig", l.Primary.Kubeconfig, "--webhook-url", url, "--metrics-addr", "", "--log-level", "warn"}
	if class != "" {
		args = append(args, "--storage-classes", class)
	}
	cmd := exec.Command(filepath.Join(bin, "forwarder"), args...)
	cmd.Env = append(append(os.Environ(), "FORWARDER_WEBHOOK_TOKEN=bench"), env...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

func benchPV(name, class string) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}, StorageClassName: class,
			PersistentVolumeSource: corev1.PersistentVolumeSource{NFS: &corev1.NFSVolumeSource{Server: "192.0.2.10", Path: "/srv/nfs/exports/" + name}}}}
}

// BenchmarkForwarder: latency from a PV write (label patch) in the lab's
// kube-apiserver to the receiver's 200, p50/p99 over 1,000 writes, against a
// bare client-go watch of the same writes (the floor).
func BenchmarkForwarder(b *testing.B) {
	l := lab.Get(b)
	bin := buildBinaries(b)
	rc, err := l.Primary.RESTConfig()
	if err != nil {
		b.Fatal(err)
	}
	rc.QPS, rc.Burst = 1000, 1000
	cs := kubernetes.NewForConfigOrDie(rc)
	ctx := context.Background()
	const pvs, writes = 10, 1000
	for i := 0; i < pvs; i++ {
		if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, benchPV(fmt.Sprintf("lat-%d", i), "bench-lat"), metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	// write patches PV i's bench-seq label and returns when the API answered.
	write := func(i, seq int) time.Time {
		start := time.Now()
		patch := fmt.Sprintf(`{"metadata":{"labels":{"bench-seq":"%d"}}}`, seq)
		if _, err := cs.CoreV1().PersistentVolumes().Patch(ctx, fmt.Sprintf("lat-%d", i%pvs), types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			b.Fatal(err)
		}
		return start
	}
	run := func(b *testing.B, wait func(key string) (time.Time, bool)) {
		var lat []time.Duration
		for seq := 1; seq <= writes; seq++ {
			i := seq % pvs
			start := write(i, seq)
			key := fmt.Sprintf("lat-%d/%d", i, seq)
			deadline := time.Now().Add(10 * time.Second)
			for {
				if at, ok := wait(key); ok {
					lat = append(lat, at.Sub(start))
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("write %s never arrived", key)
				}
				time.Sleep(200 * time.Microsecond)
			}
		}
		p50, p99 := quantiles(lat)
		b.ReportMetric(p50, "p50-ms")
		b.ReportMetric(p99, "p99-ms")
		b.ReportMetric(0, "ns/op")
	}
	b.Run("bare-watch", func(b *testing.B) {
		for n := 0; n < b.N; n++ {
			w, err := cs.CoreV1().PersistentVolumes().Watch(ctx, metav1.ListOptions{})
			if err != nil {
				b.Fatal(err)
			}
			var mu sync.Mutex
			seen := map[string]time.Time{}
			go func() {
				for ev := range w.ResultChan() {
					if ev.Type != watch.Modified {
						continue
					}
					pv := ev.Object.(*corev1.PersistentVolume)
					if s := pv.Labels["bench-seq"]; s != "" {
						mu.Lock()
						seen[pv.Name+"/"+s] = time.Now()
						mu.Unlock()
					}
				}
			}()
			run(b, func(k string) (time.Time, bool) { mu.Lock(); defer mu.Unlock(); t, ok := seen[k]; return t, ok })
			w.Stop()
		}
	})
	b.Run("forwarder", func(b *testing.B) {
		for n := 0; n < b.N; n++ {
			s := newSink()
			defer s.srv.Close()
			startForwarder(b, bin, l, s.srv.URL+"/endpoint", "bench-lat")
			deadline := time.Now().Add(30 * time.Second)
			for s.count.Load() < pvs { // the initial list is delivered
				if time.Now().After(deadline) {
					b.Fatal("forwarder did not deliver the initial state")
				}
				time.Sleep(50 * time.Millisecond)
			}
			run(b, s.at)
		}
	})
}

var gvrVS = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshots"}

// BenchmarkForwarderMemory: resident memory of the forwarder process with
// 10,000 PVs and 10,000 VolumeSnapshots in the API server, once it has
// delivered the initial state of all of them (peak and settled RSS).
func BenchmarkForwarderMemory(b *testing.B) {
	l := lab.Get(b)
	bin := buildBinaries(b)
	rc, err := l.Primary.RESTConfig()
	if err != nil {
		b.Fatal(err)
	}
	rc.QPS, rc.Burst = 2000, 2000
	cs := kubernetes.NewForConfigOrDie(rc)
	dc := dynamic.NewForConfigOrDie(rc)
	ctx := context.Background()
	const n = 10000
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench-mem"}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, benchPV(fmt.Sprintf("mem-%05d", i), "bench-mem"), metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
				vs := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
					"metadata": map[string]any{"name": fmt.Sprintf("vs-%05d", i), "namespace": "bench-mem"},
					"spec":     map[string]any{"source": map[string]any{"persistentVolumeClaimName": fmt.Sprintf("pvc-%05d", i)}}}}
				if _, err := dc.Resource(gvrVS).Namespace("bench-mem").Create(ctx, vs, metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	defer func() {
		_ = cs.CoreV1().PersistentVolumes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{FieldSelector: ""})
		_ = dc.Resource(gvrVS).Namespace("bench-mem").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	}()
	// go-default: the Go runtime's defaults (GOGC=100). gomemlimit: the
	// soft memory limit deploy/forwarder sets (GOMEMLIMIT=75MiB), which
	// trades some GC CPU for a smaller heap.
	for _, v := range []struct{ name, env string }{{"go-default", "GOMEMLIMIT=off"}, {"gomemlimit-75MiB", "GOMEMLIMIT=75MiB"}} {
		b.Run(v.name, func(b *testing.B) { measureForwarderMemory(b, bin, l, n, v.env) })
	}
}

func measureForwarderMemory(b *testing.B, bin string, l *lab.Lab, n int, env string) {
	for i := 0; i < b.N; i++ {
		s := newSink()
		cmd := startForwarder(b, bin, l, s.srv.URL+"/endpoint", "", env)
		deadline := time.Now().Add(5 * time.Minute)
		for s.count.Load() < int64(2*n) {
			if time.Now().After(deadline) {
				b.Fatalf("forwarder delivered %d of %d initial events", s.count.Load(), 2*n)
			}
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(2 * time.Second) // settle
		rss, hwm := procMem(b, cmd.Process.Pid)
		b.ReportMetric(rss, "rss-MiB")
		b.ReportMetric(hwm, "peak-rss-MiB")
		b.ReportMetric(0, "ns/op")
		_ = cmd.Process.Kill()
		s.srv.Close()
	}
}

func procMem(b *testing.B, pid int) (rss, hwm float64) {
	b.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(fields[1], 64)
		switch fields[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			hwm = kb / 1024
		}
	}
	return rss, hwm
}
