package receiver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
	"github.com/ocpv-dr/ocpv-dr/pkg/webhook"
)

// pvPayload is a forwarder event of about 2 KB, as the forwarder sends for an
// NFS PersistentVolume.
func pvPayload(i int) []byte {
	ev := map[string]any{
		"schema": "ocpv-dr.io/event/v1", "id": fmt.Sprintf("uid-%d:1234%d:MODIFIED", i, i), "type": "MODIFIED", "kind": "PersistentVolume",
		"apiVersion": "v1", "cluster": "primary", "observedAt": "2026-01-01T00:00:00Z", "initial": false,
		"resource": map[string]any{
			"apiVersion": "v1", "kind": "PersistentVolume",
			"metadata": map[string]any{
				"name": fmt.Sprintf("pvc-%08d-3f1c-4a5e-9d2b-7c1e5a9b0d%02d", i, i%100), "uid": fmt.Sprintf("uid-%d", i), "resourceVersion": fmt.Sprintf("1234%d", i),
				"creationTimestamp": "2026-01-01T00:00:00Z",
				"annotations": map[string]any{
					"pv.kubernetes.io/provisioned-by":                       "nfs.csi.k8s.io",
					"volume.kubernetes.io/provisioner-deletion-secret-name": "", "volume.kubernetes.io/provisioner-deletion-secret-namespace": "",
				},
				"finalizers": []any{"kubernetes.io/pv-protection", "external-provisioner.volume.kubernetes.io/finalizer"},
				"labels":     map[string]any{"app": "vm-disks", "ocpv-dr.io/replicate": "true"},
			},
			"spec": map[string]any{
				"accessModes": []any{"ReadWriteMany"}, "capacity": map[string]any{"storage": "30Gi"},
				"claimRef": map[string]any{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": fmt.Sprintf("rootdisk-vm-%d", i),
					"namespace": "vms", "resourceVersion": "99881", "uid": fmt.Sprintf("claim-uid-%d", i)},
				"csi": map[string]any{"driver": "nfs.csi.k8s.io", "volumeHandle": fmt.Sprintf("10.0.0.11#exports#pvc-%d##", i),
					"volumeAttributes": map[string]any{"server": "10.0.0.11", "share": "/exports", "subdir": fmt.Sprintf("pvc-%d", i),
						"csi.storage.k8s.io/pv/name": fmt.Sprintf("pvc-%d", i), "csi.storage.k8s.io/pvc/name": fmt.Sprintf("rootdisk-vm-%d", i),
						"csi.storage.k8s.io/pvc/namespace": "vms", "storage.kubernetes.io/csiProvisionerIdentity": "1700000000000-8081-nfs.csi.k8s.io"}},
				"mountOptions":                  []any{"nfsvers=4.1", "hard", "timeo=600", "retrans=2"},
				"persistentVolumeReclaimPolicy": "Delete", "storageClassName": "nfs-dynamic", "volumeMode": "Filesystem",
			},
			"status": map[string]any{"phase": "Bound", "lastPhaseTransitionTime": "2026-01-01T00:00:05Z"},
		},
	}
	b, _ := json.Marshal(ev)
	pad := 2048 - len(b)
	if pad > 0 {
		ev["resource"].(map[string]any)["metadata"].(map[string]any)["annotations"].(map[string]any)["ocpv-dr.io/padding"] = strings.Repeat("x", pad)
		b, _ = json.Marshal(ev)
	}
	return b
}

// bareHandler is the baseline: chi, token check, body read and JSON check,
// no persistence.
func bareHandler() http.Handler {
	r := chi.NewRouter()
	r.Post("/*", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no", 401)
			return
		}
		b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil || !json.Valid(b) {
			http.Error(w, "bad", 400)
			return
		}
		_, _ = io.WriteString(w, "endpoint")
	})
	return r
}

func durableHandler(b *testing.B) http.Handler {
	in, err := inbox.Open(inbox.Options{Dir: b.TempDir(), RetainCount: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = in.Close() })
	h, err := webhook.New(webhook.Config{Token: "tok", Registerer: prometheus.NewRegistry()}, in)
	if err != nil {
		b.Fatal(err)
	}
	r := chi.NewRouter()
	h.Mount(r)
	return r
}

func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConns: 128, MaxIdleConnsPerHost: 128, DisableCompression: true}}
}

func postOne(c *http.Client, url string, body []byte) error {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer tok")
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// BenchmarkIngest: 32 concurrent clients POST distinct ~2 KB PV events; a 200
// from "durable" means the event is fsynced in the inbox.
func BenchmarkIngest(b *testing.B) {
	const clients = 32
	payloads := make([][]byte, 4096)
	for i := range payloads {
		payloads[i] = pvPayload(i)
	}
	for _, v := range []struct {
		name string
		h    func(*testing.B) http.Handler
	}{{"bare", func(*testing.B) http.Handler { return bareHandler() }}, {"durable", durableHandler}} {
		b.Run(v.name, func(b *testing.B) { benchHandler(b, v.h(b)) })
	}
}

func benchHandler(b *testing.B, h http.Handler) {
	const clients = 32
	payloads := make([][]byte, 4096)
	for i := range payloads {
		payloads[i] = pvPayload(i)
	}
	{
		{
			srv := httptest.NewServer(h)
			defer srv.Close()
			c := benchClient()
			var next atomic.Int64
			var failed atomic.Int64
			b.SetBytes(int64(len(payloads[0])))
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range clients {
				wg.Go(func() {
					for {
						i := int(next.Add(1)) - 1
						if i >= b.N {
							return
						}
						// Distinct ids: bodies differ in their id field per round.
						body := payloads[i%len(payloads)]
						if i >= len(payloads) {
							body = bytes.Replace(body, []byte(`"id":"uid-`), []byte(fmt.Sprintf(`"id":"r%d-uid-`, i/len(payloads))), 1)
						}
						if err := postOne(c, srv.URL+"/endpoint", body); err != nil {
							failed.Add(1)
						}
					}
				})
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			if failed.Load() > 0 {
				b.Fatalf("%d requests failed", failed.Load())
			}
			b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
		}
	}
}

// BenchmarkIngestLatency: events at a fixed 2,000/s from 32 clients; p50 and
// p99 time to the 200.
func BenchmarkIngestLatency(b *testing.B) {
	const rate, clients = 2000, 32
	payload := pvPayload(1)
	for _, v := range []struct {
		name string
		h    func(*testing.B) http.Handler
	}{{"bare", func(*testing.B) http.Handler { return bareHandler() }}, {"durable", durableHandler}} {
		b.Run(v.name, func(b *testing.B) {
			srv := httptest.NewServer(v.h(b))
			defer srv.Close()
			c := benchClient()
			n := max(b.N, 2000)
			lat := make([]time.Duration, n)
			ticks := make(chan int, n)
			var wg sync.WaitGroup
			var failed atomic.Int64
			for range clients {
				wg.Go(func() {
					for i := range ticks {
						body := bytes.Replace(payload, []byte(`"id":"uid-`), []byte(fmt.Sprintf(`"id":"%d-uid-`, i)), 1)
						t0 := time.Now()
						if err := postOne(c, srv.URL+"/e", body); err != nil {
							failed.Add(1)
						}
						lat[i] = time.Since(t0)
					}
				})
			}
			b.ResetTimer()
			interval := time.Second / rate
			start := time.Now()
			for i := range n {
				if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
					time.Sleep(d)
				}
				ticks <- i
			}
			close(ticks)
			wg.Wait()
			b.StopTimer()
			if failed.Load() > 0 {
				b.Fatalf("%d requests failed", failed.Load())
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			ms := func(q float64) float64 { return float64(lat[int(q*float64(n-1))]) / float64(time.Millisecond) }
			b.ReportMetric(ms(0.50), "p50-ms")
			b.ReportMetric(ms(0.99), "p99-ms")
		})
	}
}
