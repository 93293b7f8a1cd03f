// Package receiver wires the receiver server: the EDA-compatible webhook, the
// durable inbox, the rule engine and dispatcher, the Controller client or the
// local runner, and the operator API, with one Run(ctx) lifecycle.
package receiver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/aap"
	"github.com/ocpv-dr/ocpv-dr/pkg/dispatch"
	"github.com/ocpv-dr/ocpv-dr/pkg/drstate"
	"github.com/ocpv-dr/ocpv-dr/pkg/inbox"
	"github.com/ocpv-dr/ocpv-dr/pkg/runner"
	"github.com/ocpv-dr/ocpv-dr/pkg/signature"
	"github.com/ocpv-dr/ocpv-dr/pkg/webhook"
)

// Config is the receiver's configuration (flags, RECEIVER_* env, file).
type Config struct {
	Listen         string        // webhook (and, without HealthListen, health/metrics/api) address
	HealthListen   string        // optional separate address for /healthz, /readyz, /metrics
	TLSCert        string        // TLS certificate (PEM); TLS is on when set
	TLSKey         string        // TLS key (PEM)
	TLSClientCA    string        // when set, clients must present a certificate signed by it
	WebhookToken   string        // bearer token, at least MinWebhookTokenLength characters
	OperatorToken  string        // reads /api/v1; when set, the webhook token no longer does
	InsecureNoAuth bool          // allows an empty WebhookToken: anyone reaching the listener can post events
	HMACSecret     string        // enables signature checks
	HMACAlgo       string        // sha256 (default), sha512, sha1
	HMACHeader     string        // default X-Hub-Signature-256
	HMACPrefix     string        // e.g. "sha256="
	HMACFormat     string        // hex (default) or base64
	MaxBodyBytes   int64         // default 1 MiB
	ReadTimeout    time.Duration // whole request (headers and body), each listener
	MaxConnections int           // connections each listener serves at once; more wait to be accepted
	Rulebook       string        // rulebook file
	Vars           string        // extra vars file; default vars.yml beside the rulebook if present
	StateDir       string        // inbox and state
	RetainAge      time.Duration // finished events kept for /api/v1
	RetainCount    int
	Schedules      string // cron-like schedules of templates (pkg/schedule); empty: none
	// DefaultRPO is the recovery point objective of volumes without an
	// ocpv-dr.io/rpo annotation (0: none); over it a volume is in breach.
	DefaultRPO time.Duration
	// RPONamespaces ("namespace=30m") and RPOVMs ("namespace/vm=15m") set
	// objectives by configuration: a PV's annotation > its VMs' > its
	// namespace's > DefaultRPO.
	RPONamespaces []string
	RPOVMs        []string
	// SiteName names this site: a failover or failback launched through
	// the API must be confirmed with it.
	SiteName string

	ControllerURL      string
	ControllerToken    string
	ControllerUsername string
	ControllerPassword string
	ControllerCAFile   string
	ControllerInsecure bool
	PollInterval       time.Duration
	ControllerRetries  int

	JobTemplates      string // local runner catalog
	Inventory         string
	JobLogDir         string // default <state-dir>/jobs
	AnsiblePlaybook   string
	ProjectDir        string // where run_playbook paths resolve; default the catalog's project dir
	MaxConcurrentJobs int
	ShutdownTimeout   time.Duration
}

// Defaults returns the default configuration.
func Defaults() Config {
	return Config{
		Listen: ":5000", MaxBodyBytes: webhook.DefaultMaxBodyBytes, StateDir: "/var/lib/ocpv-dr-receiver",
		ReadTimeout: 30 * time.Second, MaxConnections: 512,
		RetainAge: 24 * time.Hour, RetainCount: 10000, DefaultRPO: 2 * time.Hour, SiteName: "dr", PollInterval: 2 * time.Second, ControllerRetries: 5,
		AnsiblePlaybook: "ansible-playbook", MaxConcurrentJobs: 10, ShutdownTimeout: 30 * time.Second,
	}
}

// ResolveVars fills Vars with vars.yml beside the rulebook when it is empty
// and that file exists, like an activation's variables.
func (c *Config) ResolveVars() {
	if c.Vars != "" || c.Rulebook == "" {
		return
	}
	p := filepath.Join(filepath.Dir(c.Rulebook), "vars.yml")
	if st, err := os.Stat(p); err == nil && !st.IsDir() {
		c.Vars = p
	}
}

func (c Config) signature() *signature.Config {
	if c.HMACSecret == "" {
		return nil
	}
	return &signature.Config{Secret: []byte(c.HMACSecret), Algorithm: c.HMACAlgo, Header: c.HMACHeader, Prefix: c.HMACPrefix, Encoding: c.HMACFormat}
}

// Validate lists every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("--listen is empty"))
	} else if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: %w", c.Listen, err))
	}
	if c.HealthListen != "" {
		if _, _, err := net.SplitHostPort(c.HealthListen); err != nil {
			errs = append(errs, fmt.Errorf("--health-listen %q: %w", c.HealthListen, err))
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("--tls-client-ca needs --tls-cert"))
	}
	if s := c.signature(); s != nil {
		if err := s.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("HMAC: %w", err))
		}
	}
	if c.OperatorToken != "" && (len(c.OperatorToken) < MinWebhookTokenLength || c.OperatorToken == c.WebhookToken) {
		errs = append(errs, fmt.Errorf("the operator token (RECEIVER_OPERATOR_TOKEN or --operator-token-file) must have at least %d characters and differ from the webhook token", MinWebhookTokenLength))
	}
	if err := checkWebhookToken(c.WebhookToken, c.InsecureNoAuth); err != nil {
		errs = append(errs, err)
	}
	if c.MaxBodyBytes <= 0 {
		errs = append(errs, errors.New("--max-body-bytes must be positive"))
	}
	errs = append(errs, c.validateLimits()...)
	errs = append(errs, c.validateSchedules()...)
	if c.Rulebook == "" {
		errs = append(errs, errors.New("--rulebook is required"))
	} else if _, err := os.Stat(c.Rulebook); err != nil {
		errs = append(errs, fmt.Errorf("--rulebook: %w", err))
	}
	if c.Vars != "" {
		if _, err := os.Stat(c.Vars); err != nil {
			errs = append(errs, fmt.Errorf("--vars: %w", err))
		}
	}
	if c.StateDir == "" {
		errs = append(errs, errors.New("--state-dir is required"))
	}
	if c.RetainCount <= 0 || c.RetainAge <= 0 {
		errs = append(errs, errors.New("--retain-count and --retain-age must be positive"))
	}
	if c.SiteName == "" {
		errs = append(errs, errors.New("--site-name is empty"))
	}
	if c.DefaultRPO < 0 {
		errs = append(errs, errors.New("--default-rpo must not be negative"))
	}
	if _, err := drstate.ParseObjectives(c.RPONamespaces, false); err != nil {
		errs = append(errs, fmt.Errorf("--rpo-namespace: %w", err))
	}
	if _, err := drstate.ParseObjectives(c.RPOVMs, true); err != nil {
		errs = append(errs, fmt.Errorf("--rpo-vm: %w", err))
	}
	if c.MaxConcurrentJobs <= 0 {
		errs = append(errs, errors.New("--max-concurrent-jobs must be positive"))
	}
	if c.ControllerURL != "" {
		if c.ControllerToken == "" && c.ControllerUsername == "" {
			errs = append(errs, errors.New("--controller-url needs a token (RECEIVER_CONTROLLER_TOKEN or EDA_CONTROLLER_TOKEN) or a username/password"))
		}
		if c.PollInterval <= 0 {
			errs = append(errs, errors.New("--poll-interval must be positive"))
		}
	}
	if c.JobTemplates != "" {
		if _, err := os.Stat(c.JobTemplates); err != nil {
			errs = append(errs, fmt.Errorf("--job-templates: %w", err))
		}
	}
	if c.Inventory != "" {
		if _, err := os.Stat(c.Inventory); err != nil {
			errs = append(errs, fmt.Errorf("--inventory: %w", err))
		}
	}
	return errors.Join(errs...)
}

// EngineFactory builds the rule engine from the configuration (the rulebook
// and its vars). It is injected so that the server does not depend on how the
// rulebook is loaded.
type EngineFactory func(cfg Config, log *zap.Logger) (dispatch.Engine, error)

// Deps are the receiver's injected dependencies.
type Deps struct {
	Logger     *zap.Logger
	Registry   *prometheus.Registry
	NewEngine  EngineFactory
	WrapEvent  func(e *inbox.Entry) (map[string]any, error)
	OnListen   func(webhookAddr, healthAddr string) // called once listening (tests)
	ControlEnv func(string) string                  // EDA_CONTROLLER_* lookup (default os.Getenv)
}

// Run serves until ctx ends or a rule's shutdown action runs: New, Start,
// Wait, Stop.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	r, err := New(ctx, cfg, deps)
	if err != nil {
		return err
	}
	if err := r.Start(); err != nil {
		r.Stop(context.Background())
		return err
	}
	err = r.Wait()
	r.Stop(context.Background())
	return err
}

// readiness is nil once the receiver serves and while its inbox accepts
// events (a full disk makes it not ready, with the reason).
func readiness(ready *atomic.Bool, in *inbox.Inbox) func() error {
	return func() error {
		if !ready.Load() {
			return errors.New("not ready")
		}
		return in.Health()
	}
}

func addHealth(r chi.Router, ready func() error, reg *prometheus.Registry) {
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	r.Get("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	r.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
}

func executors(cfg Config, deps Deps, log *zap.Logger, reg prometheus.Registerer) (templates, playbooks dispatch.Executor, err error) {
	var cat *runner.Catalog
	if cfg.JobTemplates != "" {
		if cat, err = runner.LoadCatalog(cfg.JobTemplates); err != nil {
			return nil, nil, err
		}
		if err := cat.Check(); err != nil {
			// Not fatal: a template the rulebook never fires needs no
			// playbook; a job for a missing one fails with this reason.
			log.Warn("--job-templates lists playbooks that do not exist", zap.Error(err))
		}
	}
	logDir := jobLogDir(cfg)
	r, rerr := runner.New(runner.Config{Catalog: cat, ProjectDir: cfg.ProjectDir, Inventory: cfg.Inventory, LogDir: logDir,
		AnsiblePlaybook: cfg.AnsiblePlaybook, Logger: log.Named("runner")})
	if rerr != nil {
		if cfg.ControllerURL == "" && cat != nil {
			return nil, nil, rerr
		}
		log.Warn("local runner unavailable; run_playbook actions will fail", zap.Error(rerr))
	} else {
		playbooks = r
	}
	if cfg.ControllerURL == "" {
		if cat == nil {
			log.Warn("no --controller-url and no --job-templates: run_job_template and run_workflow_template actions will fail")
		}
		return playbooks, playbooks, nil
	}
	acfg := aap.Config{URL: cfg.ControllerURL, Token: cfg.ControllerToken, Username: cfg.ControllerUsername, Password: cfg.ControllerPassword,
		CAFile: cfg.ControllerCAFile, InsecureSkipVerify: cfg.ControllerInsecure, PollInterval: cfg.PollInterval, RetryMax: cfg.ControllerRetries,
		Logger: log.Named("controller"), Registerer: reg}
	getenv := deps.ControlEnv
	if getenv == nil {
		getenv = os.Getenv
	}
	acfg.ApplyEnv(getenv)
	c, err := aap.New(acfg)
	if err != nil {
		return nil, nil, err
	}
	return c, playbooks, nil
}

// jobLogDir is the local runner's log directory, absolute.
func jobLogDir(cfg Config) string {
	d := cfg.JobLogDir
	if d == "" {
		d = filepath.Join(cfg.StateDir, "jobs")
	}
	if abs, err := filepath.Abs(d); err == nil {
		return abs
	}
	return d
}

func serverTLS(cfg Config) (*tls.Config, error) {
	if cfg.TLSCert == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.TLSClientCA != "" {
		pem, err := os.ReadFile(cfg.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("receiver: read client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("receiver: no certificates in %s", cfg.TLSClientCA)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}
