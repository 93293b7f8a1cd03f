package receiver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/dispatch"
	"github.com/ocpv-dr/ocpv-dr/pkg/drstate"
	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
	"github.com/ocpv-dr/ocpv-dr/pkg/webhook"
)

// Receiver is a built receiver: New opens its inbox and listeners and wires
// the engine, executors, dispatcher, webhook and API; Start serves; Wait
// blocks until it should stop; Stop shuts it down.
type Receiver struct {
	cfg      Config
	deps     Deps
	log      *zap.Logger
	reg      *prometheus.Registry
	mreg     prometheus.Registerer
	ctx      context.Context // ends with the parent, a shutdown action or Stop
	shutdown context.CancelCauseFunc

	in        *inbox.Inbox
	jobs      *jobRecorder   // the inbox as the dispatcher and schedules record jobs
	state     *drstate.State // per-volume DR state
	launcher  *launcher      // POST /api/v1/launch
	engine    dispatch.Engine
	templates dispatch.Executor
	playbooks dispatch.Executor
	dispatch  *dispatch.Dispatcher
	webhook   *webhook.Handler
	ready     atomic.Bool
	tls       *tls.Config
	servers   []*http.Server
	addrs     []string // where each server listens
	lns       []net.Listener

	cleanups      []func() // undone in reverse order by Stop, or by New when a step fails
	stopSchedules func()
	stopDispatch  context.CancelFunc
	wg            sync.WaitGroup
	errc          chan error
	stopOnce      sync.Once
}

// New validates the configuration and builds the receiver. When a step
// fails, the steps before it are undone in reverse order.
func New(ctx context.Context, cfg Config, deps Deps) (*Receiver, error) {
	r, err := newReceiver(ctx, cfg, deps)
	if err != nil {
		return nil, err
	}
	steps := []func() error{r.openInbox, r.buildState, r.buildEngine, r.buildExecutors, r.buildLauncher, r.buildDispatcher,
		r.buildWebhook, r.buildServers, r.openListeners}
	for _, step := range steps {
		if err := step(); err != nil {
			r.cleanup()
			return nil, err
		}
	}
	return r, nil
}

// newReceiver checks the configuration and the dependencies and fills in
// their defaults.
func newReceiver(ctx context.Context, cfg Config, deps Deps) (*Receiver, error) {
	cfg.ResolveVars()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("receiver: invalid configuration: %w", err)
	}
	r := &Receiver{cfg: cfg, deps: deps, log: deps.Logger, reg: deps.Registry}
	if r.log == nil {
		r.log = zap.NewNop()
	}
	if r.reg == nil {
		r.reg = prometheus.NewRegistry()
	}
	if deps.NewEngine == nil {
		return nil, errors.New("receiver: no rule engine")
	}
	// Every receiver metric is ocpdr_receiver_*, like the forwarder's ocpdr_forwarder_*.
	r.mreg = prometheus.WrapRegistererWithPrefix("ocpdr_", r.reg)
	r.ctx, r.shutdown = context.WithCancelCause(ctx)
	r.onCleanup(func() { r.shutdown(nil) })
	return r, nil
}

// onCleanup pushes an undo step on the cleanup stack.
func (r *Receiver) onCleanup(f func()) { r.cleanups = append(r.cleanups, f) }

// cleanup undoes the steps done so far, last first.
func (r *Receiver) cleanup() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	r.cleanups = nil
}

// openInbox opens the durable inbox under the state directory.
func (r *Receiver) openInbox() error {
	cfg, log := r.cfg, r.log
	in, err := inbox.Open(inbox.Options{Dir: cfg.StateDir, RetainAge: cfg.RetainAge, RetainCount: cfg.RetainCount, Logger: log.Named("inbox"), Registerer: r.mreg})
	if err != nil {
		return err
	}
	r.in = in
	r.onCleanup(func() {
		if err := in.Close(); err != nil {
			log.Error("close inbox", zap.Error(err))
		}
	})
	if cfg.InsecureNoAuth {
		log.Warn("WEBHOOK AUTHENTICATION IS DISABLED (--insecure-no-auth): anyone who can reach the listener can post events "+
			"and read /api/v1; set "+tokenSources+" for production", zap.String("listen", cfg.Listen))
	}
	if n := in.Depth(); n > 0 {
		log.Info("resuming pending events from before the restart", zap.Int("pending", n))
	}
	return nil
}

// buildEngine builds the rule engine from the rulebook.
func (r *Receiver) buildEngine() error {
	engine, err := r.deps.NewEngine(r.cfg, r.log.Named("rulebook"))
	if err != nil {
		return fmt.Errorf("receiver: rulebook: %w", err)
	}
	r.engine = engine
	return nil
}

// buildExecutors builds the Controller client and the local runner.
func (r *Receiver) buildExecutors() error {
	var err error
	r.templates, r.playbooks, err = executors(r.cfg, r.deps, r.log, r.mreg)
	return err
}

// buildLauncher builds the launcher of POST /api/v1/launch.
func (r *Receiver) buildLauncher() error {
	l, err := newLauncher(r.cfg, r.templates, r.jobs, r.log.Named("launch"))
	if err != nil {
		return err
	}
	r.launcher = l
	r.onCleanup(l.Stop)
	return nil
}

// buildDispatcher builds the dispatcher; a rule's shutdown action ends r.ctx.
func (r *Receiver) buildDispatcher() error {
	d, err := dispatch.New(dispatch.Config{
		Engine: r.engine, Store: r.jobs, Templates: r.templates, Playbooks: r.playbooks,
		MaxConcurrentJobs: r.cfg.MaxConcurrentJobs, Wrap: r.deps.WrapEvent,
		Shutdown: func(reason string) { r.shutdown(fmt.Errorf("shutdown action: %s", reason)) },
		Logger:   r.log.Named("dispatch"), Registerer: r.mreg,
	})
	if err != nil {
		return err
	}
	r.dispatch = d
	return nil
}

// buildWebhook builds the EDA-compatible webhook, with signature checks when
// an HMAC secret is set.
func (r *Receiver) buildWebhook() error {
	cfg := r.cfg
	var verifier webhook.Verifier
	header := ""
	if s := cfg.signature(); s != nil {
		verifier, header = *s, s.HeaderName()
	}
	wh, err := webhook.New(webhook.Config{Token: cfg.WebhookToken, Verifier: verifier, SignatureHeader: header,
		MaxBodyBytes: cfg.MaxBodyBytes, Logger: r.log.Named("webhook"), Registerer: r.mreg}, r.in)
	if err != nil {
		return err
	}
	r.webhook = wh
	return nil
}

// buildServers builds the routers (webhook, operator API, health) and the
// HTTP servers that serve them.
func (r *Receiver) buildServers() error {
	cfg, log := r.cfg, r.log
	health := chi.NewRouter()
	addHealth(health, readiness(&r.ready, r.in), r.reg)
	main := chi.NewRouter()
	api := &apiHandler{in: r.in, state: r.state, launcher: r.launcher, logDir: jobLogDir(cfg), auth: newOperatorAuth(cfg.OperatorToken, cfg.WebhookToken, r.webhook), log: log}
	if cfg.OperatorToken == "" {
		log.Warn("no operator token: the webhook token also reads /api/v1 (set RECEIVER_OPERATOR_TOKEN to separate them)")
	}
	main.Get("/api/v1/events", api.events)
	main.Get("/api/v1/jobs", api.jobs)
	main.Get("/api/v1/volumes", api.volumes)
	main.Get("/api/v1/readiness", api.readiness)
	main.Get("/reports/{kind}", api.reportPage)
	main.Get("/api/v1/jobs/{id}", api.job)
	main.Get("/api/v1/jobs/{id}/log", api.jobLog)
	main.Post("/api/v1/launch", api.launchHandler)
	main.Post("/api/v1/login", api.login)
	main.Get("/", api.page)
	main.Get("/favicon.ico", favicon)
	if cfg.HealthListen == "" {
		addHealth(main, readiness(&r.ready, r.in), r.reg)
	}
	r.webhook.Mount(main)

	tlsCfg, err := serverTLS(cfg)
	if err != nil {
		return err
	}
	r.tls = tlsCfg
	r.servers, r.addrs = cfg.servers(main, health, tlsCfg, log)
	return nil
}

// openListeners opens the listeners of the servers (none is served yet).
func (r *Receiver) openListeners() error {
	lns, err := r.cfg.listen(r.addrs)
	if err != nil {
		return err
	}
	r.lns = lns
	r.onCleanup(func() {
		for _, l := range lns {
			_ = l.Close()
		}
	})
	return nil
}

// Start starts the scheduler, the dispatcher and the servers, then reports
// ready. After an error, Stop undoes what New did.
func (r *Receiver) Start() error {
	stop, err := startSchedules(r.cfg, r.jobs, r.templates, r.log, r.mreg)
	if err != nil {
		return err
	}
	r.stopSchedules = stop
	r.errc = make(chan error, len(r.servers)+1)
	r.startDispatcher()
	r.startServers()
	r.ready.Store(true)
	r.logListening()
	return nil
}

// startDispatcher runs the dispatcher until Stop.
func (r *Receiver) startDispatcher() {
	dctx, stop := context.WithCancel(context.Background())
	r.stopDispatch = stop
	r.wg.Go(func() {
		if err := r.dispatch.Run(dctx); err != nil {
			r.errc <- err
		}
	})
}

// startServers serves every server on its listener until Stop.
func (r *Receiver) startServers() {
	for i, srv := range r.servers {
		ln := r.lns[i]
		r.wg.Go(func() {
			var err error
			if srv.TLSConfig != nil {
				err = srv.ServeTLS(ln, r.cfg.TLSCert, r.cfg.TLSKey)
			} else {
				err = srv.Serve(ln)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				r.errc <- fmt.Errorf("receiver: serve %s: %w", ln.Addr(), err)
			}
		})
	}
}

// logListening logs the listening addresses and settings and calls OnListen.
func (r *Receiver) logListening() {
	cfg, lns := r.cfg, r.lns
	healthAddr := ""
	if len(lns) > 1 {
		healthAddr = lns[1].Addr().String()
	}
	r.log.Info("receiver listening", zap.String("webhook", lns[0].Addr().String()), zap.String("health", healthAddr),
		zap.Bool("tls", r.tls != nil), zap.Bool("client_certs", cfg.TLSClientCA != ""), zap.String("state_dir", cfg.StateDir),
		zap.String("rulebook", cfg.Rulebook), zap.Bool("controller", cfg.ControllerURL != ""),
		zap.Duration("read_timeout", cfg.ReadTimeout), zap.Int("max_connections", cfg.MaxConnections), zap.Bool("auth", !cfg.InsecureNoAuth))
	if r.deps.OnListen != nil {
		r.deps.OnListen(lns[0].Addr().String(), healthAddr)
	}
}

// Wait blocks, after Start, until New's context ends, a rule's shutdown
// action runs (nil is returned for both) or a server or the dispatcher
// fails (its error is returned).
func (r *Receiver) Wait() error {
	select {
	case <-r.ctx.Done():
		if c := context.Cause(r.ctx); c != nil && !errors.Is(c, context.Canceled) {
			r.log.Info("stopping", zap.String("reason", c.Error()))
		}
		return nil
	case err := <-r.errc:
		return err
	}
}

// Stop stops the receiver: not ready, the servers shut down within
// ShutdownTimeout (from ctx), then the dispatcher, the scheduler and the
// inbox. Jobs still running are interrupted; their events stay pending and
// run again after the restart. Only the first call does anything.
func (r *Receiver) Stop(ctx context.Context) {
	r.stopOnce.Do(func() {
		r.ready.Store(false)
		sctx, cancel := context.WithTimeout(ctx, r.cfg.ShutdownTimeout)
		defer cancel()
		for _, srv := range r.servers {
			if err := srv.Shutdown(sctx); err != nil {
				r.log.Warn("http shutdown", zap.Error(err))
			}
		}
		if r.stopDispatch != nil {
			r.stopDispatch()
		}
		r.wg.Wait()
		r.launcher.Stop() // before the inbox closes: launched jobs record their end
		if r.stopSchedules != nil {
			r.stopSchedules() // before the inbox closes: runs in progress record their end
		}
		r.cleanup()
	})
}
