// Package drstate keeps the receiver's picture of every protected volume:
// per PV (and the VMs that use it) the last successful sync, its duration,
// the newest recovery point and its consistency, the last failure and its
// reason, and whether the age of the DR copy is over the volume's recovery
// point objective (RPO). It is fed from finished jobs' reports (the
// "ocpdr_report" artifact: the local runner's job result file or, on the
// Controller, the job's set_stats artifacts), persisted through a Store and
// read by /api/v1/volumes and the status page.
package drstate

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Volume states, worst first.
const (
	StateFailing = "failing" // the last sync of the volume failed
	StateBreach  = "breach"  // the DR copy is older than the RPO objective
	StateNever   = "never"   // no successful sync is known
	StateOK      = "ok"
)

// States lists every state, worst first (the order of the page and metrics).
var States = []string{StateFailing, StateBreach, StateNever, StateOK}

// Volume is the state of one protected PV.
type Volume struct {
	Name                string     `json:"name"`
	Namespace           string     `json:"namespace,omitempty"`
	PVC                 string     `json:"pvc,omitempty"`
	VMs                 []string   `json:"vms,omitempty"`
	LastStatus          string     `json:"last_status,omitempty"` // synced, failed, discrepancy, refused, ...
	LastJob             uint64     `json:"last_job,omitempty"`
	LastReport          string     `json:"last_report,omitempty"` // kind of the report: periodic-sync, event-sync, ...
	LastSuccess         *time.Time `json:"last_success,omitempty"`
	LastDurationSeconds float64    `json:"last_duration_seconds,omitempty"`
	BytesTransferred    int64      `json:"bytes_transferred,omitempty"`
	RecoveryPoint       *time.Time `json:"recovery_point,omitempty"`
	Consistency         string     `json:"consistency,omitempty"`
	LastFailure         *time.Time `json:"last_failure,omitempty"`
	FailureReason       string     `json:"failure_reason,omitempty"`
	// RPOSeconds is the objective of this volume from its annotation
	// ocpv-dr.io/rpo (0: the default objective applies).
	RPOSeconds float64 `json:"rpo_seconds,omitempty"`
}

// View is a Volume as read at a given time: its age, objective and state.
type View struct {
	Volume
	AgeSeconds   float64 `json:"age_seconds"` // age of the DR copy (-1: none)
	ObjectiveSec float64 `json:"rpo_objective_seconds"`
	// ObjectiveFrom says where the objective comes from: annotation, vm,
	// namespace or default (empty: no objective).
	ObjectiveFrom string `json:"rpo_objective_from,omitempty"`
	State         string `json:"state"`
	Breach        bool   `json:"breach"`
}

// Config configures a State.
type Config struct {
	Store      Store         // persistence; nil keeps the state in memory only
	DefaultRPO time.Duration // objective of volumes without their own; 0: none
	// VMObjectives ("namespace/vm") and NamespaceObjectives apply below a
	// volume's own annotation and above DefaultRPO (see Objectives).
	VMObjectives        map[string]time.Duration
	NamespaceObjectives map[string]time.Duration
	Now                 func() time.Time
	Logger              *zap.Logger
}

// State is the per-volume state; safe for concurrent use.
type State struct {
	cfg     Config
	obj     Objectives
	mu      sync.RWMutex
	vols    map[string]*Volume
	reports map[string]*Report // newest report of each kind
}

// New loads the persisted volumes from cfg.Store.
func New(cfg Config) (*State, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	s := &State{cfg: cfg, vols: map[string]*Volume{}, reports: map[string]*Report{},
		obj: Objectives{Default: cfg.DefaultRPO, VMs: cfg.VMObjectives, Namespaces: cfg.NamespaceObjectives}}
	if err := s.loadReports(); err != nil {
		return nil, err
	}
	if cfg.Store != nil {
		vols, err := cfg.Store.Load()
		if err != nil {
			return nil, fmt.Errorf("drstate: load: %w", err)
		}
		for _, v := range vols {
			s.vols[v.Name] = v
		}
	}
	return s, nil
}

// Len is the number of known volumes.
func (s *State) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.vols)
}

// view computes v's age, objective and state at now.
func (s *State) view(v *Volume, now time.Time) View {
	out := View{Volume: *v, AgeSeconds: -1}
	out.VMs = slices.Clone(v.VMs)
	out.ObjectiveSec, out.ObjectiveFrom = s.obj.objective(v)
	copyAt := v.RecoveryPoint
	if copyAt == nil {
		copyAt = v.LastSuccess
	}
	if copyAt != nil {
		out.AgeSeconds = max(0, now.Sub(*copyAt).Seconds())
	}
	out.Breach = out.ObjectiveSec > 0 && (out.AgeSeconds < 0 || out.AgeSeconds > out.ObjectiveSec)
	switch {
	case v.LastFailure != nil && (v.LastSuccess == nil || v.LastFailure.After(*v.LastSuccess)):
		out.State = StateFailing
	case out.Breach:
		out.State = StateBreach
	case out.AgeSeconds < 0:
		out.State = StateNever
	default:
		out.State = StateOK
	}
	return out
}

// rank orders states worst first.
func rank(state string) int { return slices.Index(States, state) }

// Views returns every volume at the current time, worst first: by state,
// then oldest DR copy first, then by name.
func (s *State) Views() []View {
	now := s.cfg.Now()
	s.mu.RLock()
	out := make([]View, 0, len(s.vols))
	for _, v := range s.vols {
		out = append(out, s.view(v, now))
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b View) int {
		if d := rank(a.State) - rank(b.State); d != 0 {
			return d
		}
		if a.AgeSeconds != b.AgeSeconds {
			if a.AgeSeconds < 0 || (b.AgeSeconds >= 0 && a.AgeSeconds > b.AgeSeconds) {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// Counts returns the number of volumes in each state and in breach of their
// objective (the bounded metrics).
func (s *State) Counts() (byState map[string]int, breach int) {
	now := s.cfg.Now()
	byState = map[string]int{}
	for _, st := range States {
		byState[st] = 0
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, v := range s.vols {
		vw := s.view(v, now)
		byState[vw.State]++
		if vw.Breach {
			breach++
		}
	}
	return byState, breach
}
