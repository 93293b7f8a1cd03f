// Package aap is a client for the Ansible Automation Platform (AWX) Controller
// REST API as ansible-rulebook's run_job_template/run_workflow_template use
// it: look a template up by name and organization, launch it with extra_vars
// and limit (and labels when the template prompts for them), follow the job
// URL the Controller returns until the job is final. It works against
// /api/v2/ (AWX, controller 2.4) and the AAP 2.5+ gateway's
// /api/controller/v2/, always following the relative URLs in responses.
// Absolute links and redirects are followed only on the configured origin
// (scheme, host and port), so the credentials never leave it.
//
// Retries are classified: GETs retry on 429, 5xx and connection errors; a
// launch POST only on 429, 502 and 503 (and refused connections), because a
// 502 may come after the Controller created the job. Each launch carries the
// label eda-event-uuid-<uuid> when the template accepts labels, and before
// launching (and before retrying a launch) the client looks for a job with
// that label, so a restart or a lost response does not launch twice.
package aap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/dispatch"
)

// DefaultLabel is the label ansible-rulebook always adds to a launch.
const DefaultLabel = "Activated by Event-Driven Ansible"

// Config configures a Client.
type Config struct {
	// URL is the Controller: https://host (then /api/v2/ is used) or a
	// gateway base such as https://gw/api/controller/ (then .../v2/).
	URL string
	// Token (Bearer) wins over Username/Password (Basic).
	Token    string
	Username string
	Password string
	// CAFile is a PEM bundle to trust; InsecureSkipVerify turns verification off.
	CAFile             string
	InsecureSkipVerify bool
	// PollInterval is the time between job status reads (default 2s).
	PollInterval time.Duration
	// RetryMax, RetryWaitMin and RetryWaitMax bound HTTP retries
	// (defaults 5, 1s, 30s).
	RetryMax     int
	RetryWaitMin time.Duration
	RetryWaitMax time.Duration
	// RequestTimeout bounds one HTTP request (default 30s).
	RequestTimeout time.Duration
	// Labels are added to every launch of a template that prompts for labels
	// (default: DefaultLabel).
	Labels     []string
	Logger     *zap.Logger
	Registerer prometheus.Registerer
}

// ApplyEnv fills empty fields from ansible-rulebook's environment variables:
// EDA_CONTROLLER_URL, _TOKEN, _USERNAME, _PASSWORD, _SSL_VERIFY (yes|no|<CA
// file>) and EDA_JOB_TEMPLATE_REFRESH_DELAY (seconds).
func (c *Config) ApplyEnv(getenv func(string) string) {
	set := func(dst *string, name string) {
		if *dst == "" {
			*dst = getenv(name)
		}
	}
	set(&c.URL, "EDA_CONTROLLER_URL")
	set(&c.Token, "EDA_CONTROLLER_TOKEN")
	set(&c.Username, "EDA_CONTROLLER_USERNAME")
	set(&c.Password, "EDA_CONTROLLER_PASSWORD")
	if v := strings.TrimSpace(getenv("EDA_CONTROLLER_SSL_VERIFY")); v != "" && c.CAFile == "" && !c.InsecureSkipVerify {
		switch strings.ToLower(v) {
		case "yes", "true":
		case "no", "false":
			c.InsecureSkipVerify = true
		default:
			c.CAFile = v
		}
	}
	if v := getenv("EDA_JOB_TEMPLATE_REFRESH_DELAY"); v != "" && c.PollInterval == 0 {
		if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 {
			c.PollInterval = time.Duration(s * float64(time.Second))
		}
	}
}

// Client talks to one Controller. It implements dispatch.Executor.
type Client struct {
	cfg    Config
	base   *url.URL // scheme and host
	prefix string   // "/api/v2/" or "/api/controller/v2/"
	hc     *http.Client
	get    *retryablehttp.Client
	post   *retryablehttp.Client
	log    *zap.Logger
	errs   *prometheus.CounterVec
}

// APIError is a Controller answer other than the expected one.
type APIError struct {
	Method string
	Path   string
	Status int
	Body   string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("controller %s %s: HTTP %d: %s", e.Method, e.Path, e.Status, e.Body)
}

// ErrTemplateNotFound is returned when no template has the name and organization.
var ErrTemplateNotFound = errors.New("template not found")

// ErrForeignOrigin is wrapped by the error for a link or redirect the
// Controller returned to another scheme, host or port: the credentials are
// only ever sent to the configured origin.
var ErrForeignOrigin = errors.New("link outside the configured controller origin")

// New validates cfg and returns a client.
func New(cfg Config) (*Client, error) {
	if cfg.URL == "" {
		return nil, errors.New("aap: controller URL is empty")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("aap: controller URL %q must be http(s)://host[:port][/path/]", redact(cfg.URL))
	}
	if cfg.Token == "" && cfg.Username == "" {
		return nil, errors.New("aap: a controller token or username/password is required")
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 2 * time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 5
	}
	if cfg.RetryWaitMin <= 0 {
		cfg.RetryWaitMin = time.Second
	}
	if cfg.RetryWaitMax <= 0 {
		cfg.RetryWaitMax = 30 * time.Second
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.Labels == nil {
		cfg.Labels = []string{DefaultLabel}
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	c := &Client{cfg: cfg, base: &url.URL{Scheme: u.Scheme, Host: u.Host}, log: cfg.Logger}
	p := strings.TrimSuffix(u.Path, "/")
	if p == "" {
		c.prefix = "/api/v2/"
	} else {
		c.prefix = p + "/v2/"
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 30,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	if u.Scheme == "https" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.InsecureSkipVerify} //nolint:gosec // operator's explicit choice
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("aap: read CA bundle: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("aap: no certificates in %s", cfg.CAFile)
			}
			tc.RootCAs = pool
		}
		tr.TLSClientConfig = tc
	}
	c.hc = &http.Client{Transport: tr, Timeout: cfg.RequestTimeout, CheckRedirect: c.checkRedirect}
	c.errs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "receiver_controller_api_errors_total", Help: "Controller API answers that were errors, by HTTP status (or \"connection\", or \"foreign_origin\" for a redirect off the controller).",
	}, []string{"status"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(c.errs); err != nil {
			return nil, fmt.Errorf("aap: register metrics: %w", err)
		}
	}
	c.get = c.retrying(c.getPolicy)
	c.post = c.retrying(c.postPolicy)
	return c, nil
}

func (c *Client) retrying(policy retryablehttp.CheckRetry) *retryablehttp.Client {
	return &retryablehttp.Client{
		HTTPClient: c.hc, Logger: nil,
		RetryWaitMin: c.cfg.RetryWaitMin, RetryWaitMax: c.cfg.RetryWaitMax, RetryMax: c.cfg.RetryMax,
		CheckRetry: policy, Backoff: retryablehttp.DefaultBackoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
}

// Prefix is the API prefix in use ("/api/v2/" or "/api/controller/v2/").
func (c *Client) Prefix() string { return c.prefix }

func (c *Client) count(resp *http.Response, err error) {
	switch {
	case errors.Is(err, ErrForeignOrigin):
		c.errs.WithLabelValues("foreign_origin").Inc()
	case err != nil:
		c.errs.WithLabelValues("connection").Inc()
	case resp != nil && resp.StatusCode >= 400:
		c.errs.WithLabelValues(strconv.Itoa(resp.StatusCode)).Inc()
	}
}

func (c *Client) getPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	c.count(resp, err)
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if errors.Is(err, ErrForeignOrigin) {
		return false, err
	}
	if err != nil {
		return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true, nil
	}
	return false, nil
}

// postPolicy retries a launch only when the Controller surely did not act on
// it (refused connection, 429, 503) or when ansible-rulebook does too (502),
// logging the duplicate risk of the latter.
func (c *Client) postPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	c.count(resp, err)
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return true, nil
		}
		return false, err
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		return true, nil
	case http.StatusBadGateway:
		c.log.Warn("controller answered 502 to a launch; retrying may create a duplicate job (checked by event label when the template accepts labels)",
			zap.String("path", resp.Request.URL.Path))
		return true, nil
	}
	return false, nil
}

// resolve turns a path or a link from a response into a URL on the
// configured origin; an absolute (or scheme-relative) link elsewhere is an
// error naming its host.
func (c *Client) resolve(ref string) (string, error) {
	u, err := url.Parse(ref)
	switch {
	case err == nil && (u.Scheme != "" || u.Host != ""):
		if err := c.checkOrigin(u); err != nil {
			return "", err
		}
		u.User = nil
		return u.String(), nil
	case err != nil && !strings.HasPrefix(ref, "/"):
		return "", fmt.Errorf("aap: controller link: %w", err)
	}
	rel := *c.base
	if i := strings.IndexByte(ref, '?'); i >= 0 {
		rel.Path, rel.RawQuery = ref[:i], ref[i+1:]
	} else {
		rel.Path = ref
	}
	return rel.String(), nil
}

// checkOrigin accepts only u on the configured scheme, host and port.
func (c *Client) checkOrigin(u *url.URL) error {
	scheme := u.Scheme
	if scheme == "" {
		scheme = c.base.Scheme // scheme-relative //host/path
	}
	if origin(scheme, u) != origin(c.base.Scheme, c.base) {
		return fmt.Errorf("aap: not following %s://%s (the configured controller is %s): %w", scheme, u.Host, c.base, ErrForeignOrigin)
	}
	return nil
}

// origin is scheme://host:port, lower-cased, with the default port explicit.
func origin(scheme string, u *url.URL) string {
	scheme = strings.ToLower(scheme)
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[scheme]
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// checkRedirect follows a redirect only on the configured origin: Go would
// copy the Authorization header to another port or down to http.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("aap: stopped after 10 redirects")
	}
	return c.checkOrigin(req.URL)
}

func (c *Client) newRequest(ctx context.Context, method, ref string, body any) (*retryablehttp.Request, error) {
	var raw any
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("aap: encode request: %w", err)
		}
		raw = b
	}
	target, err := c.resolve(ref)
	if err != nil {
		return nil, err
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, method, target, raw)
	if err != nil {
		return nil, fmt.Errorf("aap: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	} else {
		req.SetBasicAuth(c.cfg.Username, c.cfg.Password)
	}
	return req, nil
}

// do sends a request and decodes a JSON answer with one of the wanted statuses.
func (c *Client) do(hc *retryablehttp.Client, req *retryablehttp.Request, out any, want ...int) error {
	resp, err := hc.Do(req)
	if err != nil {
		if resp != nil {
			_ = resp.Body.Close()
		}
		return fmt.Errorf("aap: %s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("aap: read %s: %w", req.URL.Path, err)
	}
	ok := false
	for _, s := range want {
		ok = ok || resp.StatusCode == s
	}
	if !ok {
		return &APIError{Method: req.Method, Path: req.URL.Path, Status: resp.StatusCode, Body: strings.TrimSpace(string(b))}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("aap: decode %s: %w", req.URL.Path, err)
		}
	}
	return nil
}

func (c *Client) getJSON(ctx context.Context, ref string, out any) error {
	req, err := c.newRequest(ctx, http.MethodGet, ref, nil)
	if err != nil {
		return err
	}
	return c.do(c.get, req, out, http.StatusOK)
}

type page[T any] struct {
	Count   int     `json:"count"`
	Next    *string `json:"next"`
	Results []T     `json:"results"`
}

// list reads every page of a list, following the relative "next" links.
func list[T any](ctx context.Context, c *Client, ref string, stop func(T) bool) ([]T, error) {
	var all []T
	for pages := 0; ref != "" && pages < 100; pages++ {
		var p page[T]
		if err := c.getJSON(ctx, ref, &p); err != nil {
			return nil, err
		}
		for _, r := range p.Results {
			all = append(all, r)
			if stop != nil && stop(r) {
				return all, nil
			}
		}
		ref = ""
		if p.Next != nil {
			ref = *p.Next
		}
	}
	return all, nil
}

// Template is a (workflow) job template as the client needs it.
type Template struct {
	ID      int64  `json:"id"`
	Type    string `json:"type"`
	Name    string `json:"name"`
	URL     string `json:"url"`
	Related struct {
		Launch       string `json:"launch"`
		Jobs         string `json:"jobs"`
		WorkflowJobs string `json:"workflow_jobs"`
	} `json:"related"`
	SummaryFields struct {
		Organization *struct {
			ID   int64  `json:"id"`
			Name string `json:"name"`
		} `json:"organization"`
	} `json:"summary_fields"`
	AskLimitOnLaunch     bool `json:"ask_limit_on_launch"`
	AskLabelsOnLaunch    bool `json:"ask_labels_on_launch"`
	AskVariablesOnLaunch bool `json:"ask_variables_on_launch"`
}

// Lookup finds a template of the given type ("job_template" or
// "workflow_job_template") by exact name and organization name, through
// unified_job_templates as ansible-rulebook does.
func (c *Client) Lookup(ctx context.Context, typ, name, org string) (*Template, error) {
	match := func(t Template) bool {
		if t.Type != typ || t.Name != name {
			return false
		}
		return t.SummaryFields.Organization == nil || t.SummaryFields.Organization.Name == org
	}
	q := url.Values{"name": {name}}
	all, err := list(ctx, c, c.prefix+"unified_job_templates/?"+q.Encode(), match)
	if err != nil {
		return nil, err
	}
	for _, t := range all {
		if match(t) {
			return &t, nil
		}
	}
	return nil, fmt.Errorf("aap: %s %q in organization %q: %w", typ, name, org, ErrTemplateNotFound)
}

// Job is the part of a job (or workflow job) the client reads.
type Job struct {
	ID             int64          `json:"id"`
	Type           string         `json:"type"`
	URL            string         `json:"url"`
	Status         string         `json:"status"`
	Failed         bool           `json:"failed"`
	Started        *time.Time     `json:"started"`
	Finished       *time.Time     `json:"finished"`
	Elapsed        float64        `json:"elapsed"`
	JobExplanation string         `json:"job_explanation"`
	Artifacts      map[string]any `json:"artifacts"`
	IgnoredFields  map[string]any `json:"ignored_fields"`
}

// Final reports whether a status is terminal.
func Final(status string) bool {
	switch status {
	case "successful", "failed", "error", "canceled":
		return true
	}
	return false
}

// labelIDs returns the ids of the labels (creating missing ones in org).
func (c *Client) labelIDs(ctx context.Context, org string, names []string) ([]int64, error) {
	type named struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	}
	orgs, err := list[named](ctx, c, c.prefix+"organizations/?"+url.Values{"name": {org}}.Encode(), nil)
	if err != nil {
		return nil, err
	}
	var orgID int64
	for _, o := range orgs {
		if o.Name == org {
			orgID = o.ID
		}
	}
	if orgID == 0 {
		return nil, fmt.Errorf("aap: organization %q not found", org)
	}
	var ids []int64
	for _, n := range names {
		find := func() (int64, error) {
			ls, err := list[named](ctx, c, c.prefix+"labels/?"+url.Values{"name": {n}, "organization": {strconv.FormatInt(orgID, 10)}}.Encode(), nil)
			if err != nil {
				return 0, err
			}
			for _, l := range ls {
				if l.Name == n {
					return l.ID, nil
				}
			}
			return 0, nil
		}
		id, err := find()
		if err != nil {
			return nil, err
		}
		if id == 0 {
			req, err := c.newRequest(ctx, http.MethodPost, c.prefix+"labels/", map[string]any{"name": n, "organization": orgID})
			if err != nil {
				return nil, err
			}
			var l named
			err = c.do(c.post, req, &l, http.StatusCreated)
			var ae *APIError
			if errors.As(err, &ae) && ae.Status == http.StatusBadRequest && strings.Contains(ae.Body, "already exists") {
				l.ID, err = find()
			}
			if err != nil {
				return nil, err
			}
			id = l.ID
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// findLabeled returns the job of t carrying label that belongs to the given
// attempt (jobs with the label in launch order: the first is attempt 0, a
// relaunch after a failed job is attempt 1, ...), or nil.
func (c *Client) findLabeled(ctx context.Context, t *Template, label string, attempt int) (*Job, error) {
	ref := t.Related.Jobs
	if t.Type == "workflow_job_template" {
		ref = t.Related.WorkflowJobs
	}
	if ref == "" {
		sub := "jobs/"
		if t.Type == "workflow_job_template" {
			sub = "workflow_jobs/"
		}
		ref = t.URL + sub
	}
	q := url.Values{"labels__name": {label}, "order_by": {"id"}, "page_size": {"200"}}
	jobs, err := list[Job](ctx, c, ref+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].ID < jobs[j].ID })
	if attempt < len(jobs) {
		return &jobs[attempt], nil
	}
	return nil, nil
}

// errExisting stops a launch retry when the job turned out to exist.
type errExisting struct{ job *Job }

func (e *errExisting) Error() string { return fmt.Sprintf("job %d already launched", e.job.ID) }

// Launch starts t (or finds the job an earlier attempt started) and returns it.
func (c *Client) Launch(ctx context.Context, t *Template, req dispatch.JobRequest) (*Job, error) {
	body := map[string]any{"extra_vars": req.ExtraVars}
	if body["extra_vars"] == nil {
		body["extra_vars"] = map[string]any{}
	}
	limit := req.Limit
	if limit == "" {
		limit = "all"
	}
	if t.Type == "job_template" || t.AskLimitOnLaunch {
		body["limit"] = limit
	}
	label := ""
	if t.AskLabelsOnLaunch {
		names := append(append([]string(nil), c.cfg.Labels...), req.Labels...)
		if req.EventUUID != "" {
			label = "eda-event-uuid-" + req.EventUUID
			names = append(names, label)
			// A job launched before a restart (or despite a lost answer) is
			// followed instead of launched again.
			if j, err := c.findLabeled(ctx, t, label, req.Attempt); err != nil {
				return nil, err
			} else if j != nil {
				c.log.Info("found job already launched for this event", zap.Int64("job", j.ID), zap.String("label", label))
				return j, nil
			}
		}
		ids, err := c.labelIDs(ctx, req.Organization, names)
		if err != nil {
			return nil, err
		}
		body["labels"] = ids
	} else if len(req.Labels) > 0 {
		c.log.Warn("template does not prompt for labels; labels dropped", zap.String("template", t.Name))
	}
	hreq, err := c.newRequest(ctx, http.MethodPost, t.Related.Launch, body)
	if err != nil {
		return nil, err
	}
	pc := c.retrying(c.postPolicy)
	if label != "" {
		pc.PrepareRetry = func(*http.Request) error {
			j, err := c.findLabeled(ctx, t, label, req.Attempt)
			if err == nil && j != nil {
				return &errExisting{job: j}
			}
			return nil
		}
	}
	var j Job
	err = c.do(pc, hreq, &j, http.StatusCreated)
	var ex *errExisting
	if errors.As(err, &ex) {
		c.log.Warn("launch answered with an error but the job exists; following it", zap.Int64("job", ex.job.ID))
		return ex.job, nil
	}
	if err != nil {
		return nil, err
	}
	if len(j.IgnoredFields) > 0 {
		keys := make([]string, 0, len(j.IgnoredFields))
		for k := range j.IgnoredFields {
			keys = append(keys, k)
		}
		c.log.Info("controller ignored launch fields (not prompted on launch)", zap.String("template", t.Name), zap.Strings("fields", keys))
	}
	return &j, nil
}

// Wait polls the job URL until the job is final.
func (c *Client) Wait(ctx context.Context, j *Job) (*Job, error) {
	ref := j.URL
	if ref == "" {
		ref = fmt.Sprintf("%sjobs/%d/", c.prefix, j.ID)
	}
	cur := j
	for !Final(cur.Status) {
		select {
		case <-time.After(c.cfg.PollInterval):
		case <-ctx.Done():
			return cur, ctx.Err()
		}
		var next Job
		if err := c.getJSON(ctx, ref, &next); err != nil {
			if finalPollError(err) {
				return cur, err
			}
			c.log.Warn("job status read failed; will retry", zap.Int64("job", j.ID), zap.Error(err))
			continue
		}
		cur = &next
	}
	return cur, nil
}

// finalPollError reports whether a failed job status read cannot succeed
// later: a 4xx other than 429, or a link off the controller.
func finalPollError(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status < 500 && ae.Status != http.StatusTooManyRequests
	}
	return errors.Is(err, ErrForeignOrigin)
}

// Run looks up, launches and follows a template job (dispatch.Executor).
func (c *Client) Run(ctx context.Context, req dispatch.JobRequest) (dispatch.JobResult, error) {
	typ := "job_template"
	if req.Kind == dispatch.KindWorkflowTemplate {
		typ = "workflow_job_template"
	} else if req.Kind != dispatch.KindJobTemplate {
		return dispatch.JobResult{}, fmt.Errorf("aap: cannot run %s %q on the controller", req.Kind, req.Name)
	}
	t, err := c.Lookup(ctx, typ, req.Name, req.Organization)
	if err != nil {
		return dispatch.JobResult{}, err
	}
	j, err := c.Launch(ctx, t, req)
	if err != nil {
		return dispatch.JobResult{}, err
	}
	c.log.Info("controller job launched", zap.String("template", req.Name), zap.Int64("job", j.ID), zap.String("url", j.URL))
	j, err = c.Wait(ctx, j)
	res := dispatch.JobResult{ControllerJobID: j.ID, URL: c.uiURL(t.Type, j.ID)}
	if err != nil {
		return res, err
	}
	res.Status, res.Artifacts, res.Message = j.Status, j.Artifacts, j.JobExplanation
	if j.Started != nil {
		res.Started = *j.Started
	}
	if j.Finished != nil {
		res.Finished = *j.Finished
	}
	return res, nil
}

func (c *Client) uiURL(typ string, id int64) string {
	if typ == "workflow_job_template" {
		return fmt.Sprintf("%s/#/jobs/workflow/%d/details", c.base, id)
	}
	return fmt.Sprintf("%s/#/jobs/%d/details", c.base, id)
}

// Ping checks the Controller answers and the credentials work (GET config/).
func (c *Client) Ping(ctx context.Context) (string, error) {
	var cfg struct {
		Version string `json:"version"`
	}
	if err := c.getJSON(ctx, c.prefix+"config/", &cfg); err != nil {
		return "", err
	}
	return cfg.Version, nil
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparseable URL>"
	}
	return u.Redacted()
}
