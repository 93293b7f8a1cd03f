// Command receiver is the ocpv-dr event receiver: an ansible.eda.webhook
// compatible endpoint that stores every event durably, evaluates the EDA
// rulebook itself and launches AAP job templates (or runs the playbooks
// locally). `receiver check` and `receiver match` test a rulebook offline.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/cliconfig"
	"github.com/ocpv-dr/ocpv-dr/pkg/receiver"
	"github.com/ocpv-dr/ocpv-dr/pkg/rulebookcmd"
	"github.com/ocpv-dr/ocpv-dr/pkg/signature"
	"github.com/ocpv-dr/ocpv-dr/pkg/version"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "receiver:", err)
		os.Exit(exitCode(err))
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "receiver",
		Short:         "ocpv-dr event receiver: EDA-compatible webhook, rule engine and job launcher",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	check, match := rulebookcmd.NewCheckCommand(), rulebookcmd.NewMatchCommand()
	root.AddCommand(newServeCommand(), check, match, newLaunchCommand(), newLogsCommand(), newPreflightCommand())
	return root
}

func newServeCommand() *cobra.Command {
	d := receiver.Defaults()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Receive events, store them durably, evaluate the rulebook and run the actions",
		Long: `serve listens for webhook POSTs like ansible.eda.webhook (any path; Bearer token; optional HMAC; 1 MiB
limit), stores each event in the inbox under --state-dir before answering 200, evaluates the rulebook
(its sources section is validated but not used for listening) and runs the actions: run_job_template and
run_workflow_template on the AAP Controller at --controller-url, or, without it, the playbooks that
--job-templates maps the template names to, with ansible-playbook. Every flag can also be set as
RECEIVER_<FLAG> in the environment or in the --config file; the Controller settings also accept
ansible-rulebook's EDA_CONTROLLER_URL, EDA_CONTROLLER_TOKEN, EDA_CONTROLLER_USERNAME,
EDA_CONTROLLER_PASSWORD and EDA_CONTROLLER_SSL_VERIFY. serve refuses to start without a webhook token of at
least 32 characters (RECEIVER_WEBHOOK_TOKEN or --webhook-token-file; not the shipped placeholder) unless
--insecure-no-auth is given.

--schedules runs job and workflow templates on cron-like schedules without AAP (examples/schedules.yml:
the hourly periodic sync), through the same Controller or local runner as the rulebook's actions. A run
still going at the next due time makes that time "skipped"; due times missed while the receiver was down
make one run at start. Every run, skipped ones too, is a job in /api/v1/jobs (ruleset "schedule"); the last
fire times are kept in <state-dir>/schedules.json.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := cliconfig.NewViper(cmd, "RECEIVER")
			if err != nil {
				return err
			}
			cfg, err := configFrom(v)
			if err != nil {
				return err
			}
			cfg.ResolveVars()
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("invalid configuration:\n%w", err)
			}
			log, err := cliconfig.NewLogger(v.GetString("log-level"))
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			log.Info("receiver starting", zap.String("version", version.Version), zap.String("listen", cfg.Listen),
				zap.String("rulebook", cfg.Rulebook), zap.String("vars", cfg.Vars), zap.String("state_dir", cfg.StateDir))
			return receiver.Run(ctx, cfg, receiver.Deps{Logger: log, Registry: reg,
				NewEngine: receiver.RulebookEngine, WrapEvent: receiver.WrapEntry})
		},
	}
	fl := cmd.Flags()
	fl.String("config", "", "optional config file (YAML/JSON); flags and RECEIVER_* env override it")
	fl.String("listen", d.Listen, "webhook address (also /api/v1, and /healthz, /readyz, /metrics unless --health-listen)")
	fl.String("health-listen", "", "separate address for /healthz, /readyz and /metrics")
	fl.String("tls-cert", "", "TLS certificate (PEM); enables HTTPS")
	fl.String("tls-key", "", "TLS private key (PEM)")
	fl.String("tls-client-ca", "", "CA bundle: require client certificates signed by it")
	fl.String("operator-token-file", "", "file holding the operator Bearer token for /api/v1 (or RECEIVER_OPERATOR_TOKEN); when set the webhook token cannot read the API")
	fl.String("webhook-token-file", "", fmt.Sprintf("file holding the webhook Bearer token (or RECEIVER_WEBHOOK_TOKEN; at least %d characters)",
		receiver.MinWebhookTokenLength))
	fl.Bool("insecure-no-auth", false, "run without a webhook token: anyone who reaches --listen can post events (testing only)")
	fl.String("hmac-secret-file", "", "file holding the HMAC secret (or RECEIVER_HMAC_SECRET); enables signature checks")
	fl.String("hmac-header", signature.DefaultHeader, "header carrying the HMAC signature")
	fl.String("hmac-prefix", "sha256=", "optional prefix of the signature value")
	fl.String("hmac-algorithm", "sha256", "HMAC algorithm: sha256, sha512 or sha1")
	fl.String("hmac-encoding", "hex", "signature encoding: hex or base64")
	fl.Int64("max-body-bytes", d.MaxBodyBytes, "largest accepted body (413 above)")
	fl.Duration("read-timeout", d.ReadTimeout, "longest time to read a whole request, headers and body, on each listener")
	fl.Int("max-connections", d.MaxConnections, "connections each listener serves at once; more wait to be accepted")
	fl.String("rulebook", "", "EDA rulebook file (required)")
	fl.String("vars", "", "variables file, as ansible-rulebook --vars (default: vars.yml beside the rulebook)")
	fl.String("state-dir", d.StateDir, "inbox and job logs (created if missing)")
	fl.Duration("retain-age", d.RetainAge, "how long finished events and jobs stay visible in /api/v1")
	fl.Int("retain-count", d.RetainCount, "how many finished events and jobs stay visible in /api/v1")
	fl.String("schedules", "", "YAML list of cron-like template schedules, e.g. examples/schedules.yml (empty: none)")
	fl.Duration("default-rpo", d.DefaultRPO, "recovery point objective of volumes without an ocpv-dr.io/rpo annotation; an older DR copy is a breach (0: none)")
	fl.StringSlice("rpo-namespace", nil, "objective of a namespace's volumes, namespace=duration (vms=30m; repeat or comma-separate); below a PV's ocpv-dr.io/rpo annotation and a VM's objective")
	fl.StringSlice("rpo-vm", nil, "objective of a VM's volumes, namespace/vm=duration (vms/db=15m; repeat or comma-separate); the strictest of a volume's VMs applies")
	fl.String("site-name", d.SiteName, "name of this site: a failover or failback launched through the API needs --confirm with it")
	fl.String("controller-url", "", "AAP Controller (https://host or gateway https://host/api/controller/); empty: local runner")
	fl.String("controller-token-file", "", "file holding the Controller token (or RECEIVER_CONTROLLER_TOKEN, EDA_CONTROLLER_TOKEN)")
	fl.String("controller-username", "", "Controller user for basic auth when there is no token")
	fl.String("controller-password-file", "", "file holding the Controller password (or RECEIVER_CONTROLLER_PASSWORD)")
	fl.String("controller-ca-file", "", "CA bundle for the Controller's certificate")
	fl.Bool("controller-insecure-skip-tls-verify", false, "do not verify the Controller's certificate (testing only)")
	fl.Duration("poll-interval", d.PollInterval, "Controller job status polling interval")
	fl.Int("controller-retries", d.ControllerRetries, "HTTP retries of a Controller request")
	fl.String("job-templates", "", "local runner catalog: template name -> playbook (e.g. examples/job-templates.yml)")
	fl.String("inventory", "", "inventory for the local runner's ansible-playbook")
	fl.String("job-log-dir", "", "local runner job logs (default <state-dir>/jobs)")
	fl.String("ansible-playbook", d.AnsiblePlaybook, "ansible-playbook program for the local runner")
	fl.String("project-dir", "", "where run_playbook paths resolve (default: the catalog's project_dir)")
	fl.Int("max-concurrent-jobs", d.MaxConcurrentJobs, "jobs running at once (one per resource at a time)")
	fl.Duration("shutdown-timeout", d.ShutdownTimeout, "time given to in-flight requests at shutdown")
	fl.String("log-level", "info", "debug, info, warn or error")
	return cmd
}

func configFrom(v *cliconfig.Values) (receiver.Config, error) {
	c := receiver.Defaults()
	c.Listen = v.GetString("listen")
	c.HealthListen = v.GetString("health-listen")
	c.TLSCert, c.TLSKey, c.TLSClientCA = v.GetString("tls-cert"), v.GetString("tls-key"), v.GetString("tls-client-ca")
	c.HMACHeader, c.HMACPrefix = v.GetString("hmac-header"), v.GetString("hmac-prefix")
	c.HMACAlgo, c.HMACFormat = v.GetString("hmac-algorithm"), v.GetString("hmac-encoding")
	c.MaxBodyBytes, c.InsecureNoAuth = v.GetInt64("max-body-bytes"), v.GetBool("insecure-no-auth")
	c.ReadTimeout, c.MaxConnections = v.GetDuration("read-timeout"), v.GetInt("max-connections")
	c.Rulebook, c.Vars, c.StateDir = v.GetString("rulebook"), v.GetString("vars"), v.GetString("state-dir")
	c.RetainAge, c.RetainCount = v.GetDuration("retain-age"), v.GetInt("retain-count")
	c.Schedules, c.DefaultRPO, c.SiteName = v.GetString("schedules"), v.GetDuration("default-rpo"), v.GetString("site-name")
	c.RPONamespaces, c.RPOVMs = v.GetStringSlice("rpo-namespace"), v.GetStringSlice("rpo-vm")
	c.ControllerURL = v.GetString("controller-url")
	if c.ControllerURL == "" {
		c.ControllerURL = os.Getenv("EDA_CONTROLLER_URL")
	}
	c.ControllerUsername = v.GetString("controller-username")
	if c.ControllerUsername == "" {
		c.ControllerUsername = os.Getenv("EDA_CONTROLLER_USERNAME")
	}
	c.ControllerCAFile, c.ControllerInsecure = v.GetString("controller-ca-file"), v.GetBool("controller-insecure-skip-tls-verify")
	c.PollInterval, c.ControllerRetries = v.GetDuration("poll-interval"), v.GetInt("controller-retries")
	c.JobTemplates, c.Inventory, c.JobLogDir = v.GetString("job-templates"), v.GetString("inventory"), v.GetString("job-log-dir")
	c.AnsiblePlaybook, c.ProjectDir = v.GetString("ansible-playbook"), v.GetString("project-dir")
	c.MaxConcurrentJobs, c.ShutdownTimeout = v.GetInt("max-concurrent-jobs"), v.GetDuration("shutdown-timeout")
	var errs []error
	var err error
	if c.OperatorToken, err = v.Secret("operator-token-file", "RECEIVER_OPERATOR_TOKEN"); err != nil {
		errs = append(errs, err)
	}
	if c.WebhookToken, err = v.Secret("webhook-token-file", "RECEIVER_WEBHOOK_TOKEN"); err != nil {
		errs = append(errs, err)
	}
	if c.HMACSecret, err = v.Secret("hmac-secret-file", "RECEIVER_HMAC_SECRET"); err != nil {
		errs = append(errs, err)
	}
	if c.ControllerToken, err = v.Secret("controller-token-file", "RECEIVER_CONTROLLER_TOKEN", "EDA_CONTROLLER_TOKEN"); err != nil {
		errs = append(errs, err)
	}
	if c.ControllerPassword, err = v.Secret("controller-password-file", "RECEIVER_CONTROLLER_PASSWORD", "EDA_CONTROLLER_PASSWORD"); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}
