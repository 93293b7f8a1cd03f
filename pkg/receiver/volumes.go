package receiver

// Per-volume DR state (pkg/drstate) in the receiver: every finished job
// record (event jobs of the dispatcher and scheduled runs) goes through
// jobRecorder, which feeds the job's report to the state; the state lives in
// a bucket of inbox.db; GET /api/v1/volumes serves it.

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/drstate"
	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
)

// buildState opens the per-volume state in inbox.db.
func (r *Receiver) buildState() error {
	byNS, err := drstate.ParseObjectives(r.cfg.RPONamespaces, false)
	if err != nil {
		return err
	}
	byVM, err := drstate.ParseObjectives(r.cfg.RPOVMs, true)
	if err != nil {
		return err
	}
	st, err := drstate.New(drstate.Config{Store: drstate.BoltStore{DB: r.in.Bolt()}, DefaultRPO: r.cfg.DefaultRPO,
		NamespaceObjectives: byNS, VMObjectives: byVM, Logger: r.log.Named("drstate")})
	if err != nil {
		return err
	}
	if err := st.Register(r.mreg); err != nil {
		return err
	}
	r.state = st
	r.jobs = &jobRecorder{Inbox: r.in, state: st, log: r.log.Named("drstate")}
	return nil
}

// jobRecorder is the inbox with PutJob also feeding finished jobs to the state.
type jobRecorder struct {
	*inbox.Inbox
	state *drstate.State
	log   *zap.Logger
}

var finished = map[string]bool{"successful": true, "failed": true, "error": true, "canceled": true}

// PutJob records the job and, once it finished, applies its report.
func (j *jobRecorder) PutJob(ctx context.Context, job inbox.Job) (uint64, error) {
	id, err := j.Inbox.PutJob(ctx, job)
	if err != nil || !finished[job.Status] || job.Finished == nil {
		return id, err
	}
	dj := drstate.Job{ID: id, Status: job.Status, Error: job.Error, Finished: *job.Finished, Artifacts: job.Artifacts}
	if job.EventSeq != 0 {
		if e, gerr := j.Get(job.EventSeq); gerr == nil && e != nil {
			dj.Hint = eventHint(e.Payload, j.log)
		}
	}
	if aerr := j.state.Apply(dj); aerr != nil {
		j.log.Error("record volume state", zap.Uint64("job", id), zap.Error(aerr))
	}
	return id, nil
}

// eventHint names the PV a forwarder event is about, its claim and the
// objective of its ocpv-dr.io/rpo annotation. The event is hostile: only
// strings are taken, and a bad objective is logged and ignored.
func eventHint(payload []byte, log *zap.Logger) drstate.Hint {
	var p struct {
		Resource struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name        string            `json:"name"`
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
			Spec struct {
				ClaimRef struct {
					Name      string `json:"name"`
					Namespace string `json:"namespace"`
				} `json:"claimRef"`
			} `json:"spec"`
		} `json:"resource"`
	}
	if json.Unmarshal(payload, &p) != nil || p.Resource.Kind != "PersistentVolume" {
		return drstate.Hint{}
	}
	h := drstate.Hint{PV: p.Resource.Metadata.Name, Namespace: p.Resource.Spec.ClaimRef.Namespace, PVC: p.Resource.Spec.ClaimRef.Name}
	if s := p.Resource.Metadata.Annotations[drstate.RPOAnnotation]; s != "" {
		d, err := drstate.ParseRPO(s)
		if err != nil {
			log.Warn("ignoring a bad RPO annotation", zap.String("pv", h.PV), zap.Error(err))
		}
		h.RPO = d
	}
	return h
}

// volumes serves GET /api/v1/volumes: every protected volume, worst first.
func (a *apiHandler) volumes(w http.ResponseWriter, r *http.Request) {
	if !a.auth.check(w, r) {
		return
	}
	vs := a.state.Views()
	byState, breach := a.state.Counts()
	writeJSON(w, map[string]any{"volumes": vs, "counts": byState, "in_breach": breach, "at": time.Now().UTC()})
}

// readiness serves GET /api/v1/readiness: the newest failover readiness
// facts (404 when no readiness check has reported yet).
func (a *apiHandler) readiness(w http.ResponseWriter, r *http.Request) {
	if !a.auth.check(w, r) {
		return
	}
	rd := a.state.Readiness()
	if rd == nil {
		http.Error(w, "no readiness check has reported yet", http.StatusNotFound)
		return
	}
	writeJSON(w, rd)
}
