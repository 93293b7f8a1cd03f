package receiver

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/drstate"
	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
)

// apiHandler serves the operator API: what arrived, what it matched, what ran.
type apiHandler struct {
	in       *inbox.Inbox
	state    *drstate.State
	launcher *launcher
	logDir   string // absolute job log directory: /api/v1/jobs/{id}/log serves only logs inside it
	auth     *operatorAuth
	log      *zap.Logger
}

// EventView is one element of GET /api/v1/events.
type EventView struct {
	Seq        uint64            `json:"seq"`
	ID         string            `json:"id,omitempty"`
	UUID       string            `json:"uuid"`
	Endpoint   string            `json:"endpoint"`
	ReceivedAt time.Time         `json:"received_at"`
	State      string            `json:"state"`
	Reason     string            `json:"reason,omitempty"`
	Rules      []string          `json:"rules"`
	Jobs       []inbox.Job       `json:"jobs"`
	DoneAt     *time.Time        `json:"done_at,omitempty"`
	Summary    map[string]string `json:"summary,omitempty"`
	Payload    json.RawMessage   `json:"payload,omitempty"`
}

func limitParam(r *http.Request) (int, bool) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return 50, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || n > 100000 {
		return 0, false
	}
	return n, true
}

func (a *apiHandler) events(w http.ResponseWriter, r *http.Request) {
	if !a.auth.check(w, r) {
		return
	}
	limit, ok := limitParam(r)
	if !ok {
		http.Error(w, "limit must be 1..100000", http.StatusBadRequest)
		return
	}
	withPayload := r.URL.Query().Get("payload") == "true"
	// Read the count first: an entry is finished in the file before the count
	// drops, so "pending": 0 means that every listed entry is finished.
	pending := a.in.Depth()
	entries, err := a.in.Recent(limit, true)
	if err != nil {
		a.log.Error("api: read events", zap.Error(err))
		http.Error(w, "cannot read events", http.StatusInternalServerError)
		return
	}
	out := make([]EventView, 0, len(entries))
	payloadBytes, truncated := 0, false
	for _, e := range entries {
		v := EventView{Seq: e.Seq, ID: e.ID, UUID: e.UUID, Endpoint: e.Endpoint, ReceivedAt: e.ReceivedAt, State: e.State,
			Reason: e.Reason, Rules: e.Rules, DoneAt: e.DoneAt, Summary: summarize(e.Payload), Jobs: []inbox.Job{}}
		if v.Rules == nil {
			v.Rules = []string{}
		}
		for _, id := range e.Jobs {
			if j, err := a.in.GetJob(id); err == nil && j != nil {
				j.Artifacts = nil
				v.Jobs = append(v.Jobs, *j)
			}
		}
		if withPayload {
			if payloadBytes += len(e.Payload); payloadBytes <= maxPayloadResponse {
				v.Payload = e.Payload
			} else {
				truncated = true
			}
		}
		out = append(out, v)
	}
	if !withPayload {
		writeJSON(w, map[string]any{"events": out, "pending": pending})
		return
	}
	// Bodies as stored, not re-indented (indenting multiplies a nested body's
	// size by its depth), and at most maxPayloadResponse bytes of them.
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"events": out, "pending": pending, "payloads_truncated": truncated})
}

// maxPayloadResponse bounds the event bodies one /api/v1/events?payload=true
// answer carries; later events are listed without their payload and the
// answer says payloads_truncated.
const maxPayloadResponse = 16 << 20

func (a *apiHandler) jobs(w http.ResponseWriter, r *http.Request) {
	if !a.auth.check(w, r) {
		return
	}
	limit, ok := limitParam(r)
	if !ok {
		http.Error(w, "limit must be 1..100000", http.StatusBadRequest)
		return
	}
	jobs, err := a.in.RecentJobs(limit)
	if err != nil {
		a.log.Error("api: read jobs", zap.Error(err))
		http.Error(w, "cannot read jobs", http.StatusInternalServerError)
		return
	}
	if jobs == nil {
		jobs = []inbox.Job{}
	}
	writeJSON(w, map[string]any{"jobs": jobs})
}

// summarize names the object a forwarder event is about.
func summarize(payload []byte) map[string]string {
	var p struct {
		Type     string `json:"type"`
		Kind     string `json:"kind"`
		Cluster  string `json:"cluster"`
		Initial  bool   `json:"initial"`
		Resource struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		} `json:"resource"`
	}
	if json.Unmarshal(payload, &p) != nil {
		return nil
	}
	s := map[string]string{}
	for k, v := range map[string]string{"type": p.Type, "kind": p.Kind, "cluster": p.Cluster, "name": p.Resource.Metadata.Name, "namespace": p.Resource.Metadata.Namespace} {
		if v != "" {
			s[k] = v
		}
	}
	if s["kind"] == "" && p.Resource.Kind != "" {
		s["kind"] = p.Resource.Kind
	}
	if p.Initial {
		s["initial"] = "true"
	}
	if len(s) == 0 {
		return nil
	}
	return s
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
