package virtapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ocpv-dr/ocpv-dr/test/sim/guest"
)

// freezeLimit bounds how long a freeze waits for the guests (virt-launcher
// gives the guest agent a similar budget).
const freezeLimit = 30 * time.Second

// maxEvents is how many events a VM's freeze log keeps (the newest).
const maxEvents = 200

// VMFreezes is the freeze log of one VM.
type VMFreezes struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Requests  int       `json:"requests"`  // freeze requests answered 200 (also of a frozen VM)
	Freezes   int       `json:"freezes"`   // running -> frozen
	Unfreezes int       `json:"unfreezes"` // unfreeze requests answered 200
	Thaws     int       `json:"thaws"`     // frozen -> running by an unfreeze
	AutoThaws int       `json:"autoThaws"` // frozen -> running by the unfreezeTimeout watchdog
	Refused   int       `json:"refused"`   // freeze or unfreeze requests answered with an error
	Frozen    bool      `json:"frozen"`
	FrozenAt  time.Time `json:"frozenAt,omitzero"`
	// UnfreezeTimeout is the last freeze's; Disks the images it froze.
	UnfreezeTimeout metav1.Duration   `json:"unfreezeTimeout"`
	Disks           []string          `json:"disks"`
	Durations       []metav1.Duration `json:"durations"` // completed frozen periods, oldest first
	Events          []Event           `json:"events"`
}

// Event is one entry of a freeze log.
type Event struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"` // freeze, unfreeze, auto-thaw, refused
	User    string    `json:"user,omitempty"`
	Code    int       `json:"code"`
	Message string    `json:"message,omitempty"`
}

type vmState struct {
	mu       sync.Mutex
	log      VMFreezes
	writers  []*guest.Writer // frozen by the last freeze
	watchdog *time.Timer
	epoch    uint64 // counts freezes, so a stale watchdog does nothing
	zl       *zap.Logger
}

func (s *Server) vm(ns, name string) *vmState {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := ns + "/" + name
	vm := s.vms[key]
	if vm == nil {
		vm = &vmState{log: VMFreezes{Namespace: ns, Name: name}, zl: s.log.With(zap.String("vm", key))}
		s.vms[key] = vm
	}
	return vm
}

// Freezes returns the freeze logs of every VM a request named, sorted by
// namespace/name.
func (s *Server) Freezes() []VMFreezes {
	s.mu.Lock()
	vms := make([]*vmState, 0, len(s.vms))
	for _, vm := range s.vms {
		vms = append(vms, vm)
	}
	s.mu.Unlock()
	out := make([]VMFreezes, 0, len(vms))
	for _, vm := range vms {
		out = append(out, vm.snapshot())
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name
	})
	return out
}

// FreezeLog returns one VM's freeze log (zero counters when no request named
// it).
func (s *Server) FreezeLog(namespace, name string) VMFreezes {
	s.mu.Lock()
	vm := s.vms[namespace+"/"+name]
	s.mu.Unlock()
	if vm == nil {
		return VMFreezes{Namespace: namespace, Name: name}
	}
	return vm.snapshot()
}

func (vm *vmState) snapshot() VMFreezes {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	l := vm.log
	l.Disks, l.Durations, l.Events = slices.Clone(l.Disks), slices.Clone(l.Durations), slices.Clone(l.Events)
	return l
}

func (s *Server) writers(ns, name string) []*guest.Writer {
	if s.o.Guests == nil {
		return nil
	}
	return s.o.Guests.Writers(ns, name)
}

func (s *Server) freeze(w http.ResponseWriter, r *http.Request) {
	ns, name, user := r.PathValue("namespace"), r.PathValue("name"), r.Header.Get("X-Remote-User")
	vm := s.vm(ns, name)
	timeout, serr := decodeFreezeBody(r)
	if serr == nil {
		serr = s.checkVMI(r.Context(), ns, name)
	}
	if serr == nil {
		serr = vm.freeze(r.Context(), s.writers(ns, name), timeout, user)
	}
	if serr != nil {
		vm.refused("freeze", user, serr)
		writeStatus(w, serr)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) unfreeze(w http.ResponseWriter, r *http.Request) {
	ns, name, user := r.PathValue("namespace"), r.PathValue("name"), r.Header.Get("X-Remote-User")
	vm := s.vm(ns, name)
	if serr := s.checkVMI(r.Context(), ns, name); serr != nil {
		vm.refused("unfreeze", user, serr)
		writeStatus(w, serr)
		return
	}
	vm.unfreeze(s.writers(ns, name), user)
	w.WriteHeader(http.StatusOK)
}

// decodeFreezeBody reads {"unfreezeTimeout": "<Go duration>"}, required as
// KubeVirt requires it.
func decodeFreezeBody(r *http.Request) (time.Duration, *apierrors.StatusError) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil || len(b) == 0 {
		return 0, apierrors.NewBadRequest("Request with no body: unfreeze timeout is required")
	}
	var body struct {
		UnfreezeTimeout *metav1.Duration `json:"unfreezeTimeout"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return 0, apierrors.NewBadRequest(fmt.Sprintf("Can not unmarshal Request body to struct, error: %v", err))
	}
	if body.UnfreezeTimeout == nil {
		return 0, apierrors.NewBadRequest("Unfreeze timeout is required")
	}
	if body.UnfreezeTimeout.Duration < 0 {
		return 0, apierrors.NewBadRequest("Unfreeze timeout must not be negative")
	}
	return body.UnfreezeTimeout.Duration, nil
}

// checkVMI finds the VMI (its VM), running, with a guest agent.
func (s *Server) checkVMI(ctx context.Context, ns, name string) *apierrors.StatusError {
	vm, err := s.o.VMs.Resource(gvrVM).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return apierrors.NewNotFound(vmiResource, name)
	}
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("get VM %s/%s: %w", ns, name, err))
	}
	if st, _, _ := unstructured.NestedString(vm.Object, "status", "printableStatus"); st != "Running" {
		return apierrors.NewConflict(vmiResource, name, errors.New("VMI is not running"))
	}
	if vm.GetAnnotations()[AnnotationGuestAgent] == "false" {
		return apierrors.NewConflict(vmiResource, name, errors.New("VMI does not have guest agent connected"))
	}
	return nil
}

func (vm *vmState) freeze(ctx context.Context, writers []*guest.Writer, timeout time.Duration, user string) *apierrors.StatusError {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, freezeLimit)
	defer cancel()
	begin := time.Now()
	if err := freezeAll(ctx, writers); err != nil {
		thawAll(writers)
		if vm.log.Frozen { // a failed re-freeze: the guests are thawed now
			vm.stopWatchdogLocked()
			vm.thawLocked()
		}
		return apierrors.NewInternalError(fmt.Errorf("failed to freeze VMI: %w", err))
	}
	if !vm.log.Frozen {
		vm.log.Frozen, vm.log.FrozenAt = true, time.Now()
		vm.log.Freezes++
	}
	vm.writers = writers
	vm.log.Requests++
	vm.log.UnfreezeTimeout = metav1.Duration{Duration: timeout}
	vm.log.Disks = diskPaths(writers)
	vm.arm(timeout)
	msg := fmt.Sprintf("%d disk(s) frozen in %s, unfreezeTimeout %s", len(writers), time.Since(begin).Round(time.Millisecond), timeout)
	vm.event("freeze", user, http.StatusOK, msg)
	return nil
}

func (vm *vmState) unfreeze(writers []*guest.Writer, user string) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	vm.stopWatchdogLocked()
	msg := "not frozen"
	if vm.log.Frozen {
		msg = fmt.Sprintf("thawed after %s", time.Since(vm.log.FrozenAt).Round(time.Millisecond))
		vm.log.Thaws++
		vm.thawLocked()
	}
	thawAll(writers)
	vm.log.Unfreezes++
	vm.event("unfreeze", user, http.StatusOK, msg)
}

// arm (vm.mu held) replaces the watchdog: after timeout the guests thaw by
// themselves; 0 means no watchdog.
func (vm *vmState) arm(timeout time.Duration) {
	vm.stopWatchdogLocked()
	vm.epoch++
	if timeout <= 0 {
		return
	}
	epoch := vm.epoch
	vm.watchdog = time.AfterFunc(timeout, func() { vm.autoThaw(epoch) })
}

func (vm *vmState) autoThaw(epoch uint64) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if epoch != vm.epoch || !vm.log.Frozen {
		return
	}
	vm.log.AutoThaws++
	msg := fmt.Sprintf("unfreezeTimeout %s passed: thawed after %s", vm.log.UnfreezeTimeout.Duration, time.Since(vm.log.FrozenAt).Round(time.Millisecond))
	vm.thawLocked()
	vm.event("auto-thaw", "", 0, msg)
}

// thawLocked thaws the frozen writers and closes the frozen period.
func (vm *vmState) thawLocked() {
	thawAll(vm.writers)
	vm.writers = nil
	vm.log.Durations = append(vm.log.Durations, metav1.Duration{Duration: time.Since(vm.log.FrozenAt)})
	vm.log.Frozen, vm.log.FrozenAt = false, time.Time{}
}

func (vm *vmState) stopWatchdog() {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	vm.stopWatchdogLocked()
}

func (vm *vmState) stopWatchdogLocked() {
	if vm.watchdog != nil {
		vm.watchdog.Stop()
		vm.watchdog = nil
	}
}

func (vm *vmState) refused(op, user string, serr *apierrors.StatusError) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	vm.log.Refused++
	vm.event("refused", user, int(serr.ErrStatus.Code), op+": "+serr.ErrStatus.Message)
}

// event (vm.mu held) appends to the log and logs it.
func (vm *vmState) event(kind, user string, code int, msg string) {
	vm.log.Events = append(vm.log.Events, Event{Time: time.Now(), Kind: kind, User: user, Code: code, Message: msg})
	if n := len(vm.log.Events); n > maxEvents {
		vm.log.Events = slices.Delete(vm.log.Events, 0, n-maxEvents)
	}
	vm.zl.Info("virtapi "+kind, zap.String("user", user), zap.Int("code", code), zap.String("message", msg))
}

// freezeAll freezes the writers in parallel; a stopped writer (its VM just
// stopped) needs no freeze.
func freezeAll(ctx context.Context, writers []*guest.Writer) error {
	errs := make([]error, len(writers))
	var wg sync.WaitGroup
	for i, w := range writers {
		wg.Go(func() {
			if err := w.Freeze(ctx, 0); err != nil && !errors.Is(err, guest.ErrStopped) {
				errs[i] = fmt.Errorf("%s: %w", w.Path(), err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func thawAll(writers []*guest.Writer) {
	for _, w := range writers {
		w.Thaw()
	}
}

func diskPaths(writers []*guest.Writer) []string {
	out := make([]string, 0, len(writers))
	for _, w := range writers {
		out = append(out, w.Path())
	}
	return out
}
