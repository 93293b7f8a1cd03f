// Command forwarder watches PersistentVolumes and VolumeSnapshots (or, with
// `watch-exports`, an NFS export root) and POSTs every change to the
// ocpv-dr receiver or any ansible.eda.webhook endpoint.
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
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ocpv-dr/ocpv-dr/pkg/cliconfig"
	"github.com/ocpv-dr/ocpv-dr/pkg/forwarder"
	"github.com/ocpv-dr/ocpv-dr/pkg/sender"
	"github.com/ocpv-dr/ocpv-dr/pkg/signature"
	"github.com/ocpv-dr/ocpv-dr/pkg/version"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "forwarder:", err)
		os.Exit(1)
	}
}

func addSenderFlags(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.String("config", "", "optional config file (YAML/JSON); flags and FORWARDER_* env override it")
	fl.String("webhook-url", "", "receiver or ansible.eda.webhook URL (FORWARDER_WEBHOOK_URL)")
	fl.String("webhook-token-file", "", "file holding the Bearer token (or FORWARDER_WEBHOOK_TOKEN)")
	fl.String("hmac-secret-file", "", "file holding the HMAC secret (or FORWARDER_HMAC_SECRET); enables signing")
	fl.String("hmac-header", signature.DefaultHeader, "header carrying the HMAC signature")
	fl.String("hmac-prefix", "sha256=", "prefix of the signature value")
	fl.String("hmac-algorithm", "sha256", "HMAC algorithm: sha256, sha512 or sha1")
	fl.String("hmac-encoding", "hex", "signature encoding: hex or base64")
	fl.String("ca-file", "", "CA bundle to verify the endpoint's TLS certificate")
	fl.Bool("insecure-skip-tls-verify", false, "do not verify the endpoint's certificate (testing only)")
	fl.Duration("max-backoff", 0, "cap of the retry backoff (default 30s)")
	fl.String("cluster-name", "primary", "cluster name put in every event")
	fl.String("metrics-addr", ":8080", "address for /metrics, /healthz and /readyz (empty: off)")
	fl.String("log-level", "info", "debug, info, warn or error")
}

func senderConfig(v *cliconfig.Values) (sender.Config, []error) {
	var errs []error
	token, err := v.Secret("webhook-token-file", "FORWARDER_WEBHOOK_TOKEN")
	if err != nil {
		errs = append(errs, err)
	}
	cfg := sender.Config{
		URL: v.GetString("webhook-url"), Token: token, CAFile: v.GetString("ca-file"),
		InsecureSkipVerify: v.GetBool("insecure-skip-tls-verify"), MaxBackoff: v.GetDuration("max-backoff"),
	}
	hs, err := v.Secret("hmac-secret-file", "FORWARDER_HMAC_SECRET")
	if err != nil {
		errs = append(errs, err)
	}
	if hs != "" {
		cfg.HMAC = &signature.Config{Secret: []byte(hs), Algorithm: v.GetString("hmac-algorithm"), Header: v.GetString("hmac-header"),
			Prefix: v.GetString("hmac-prefix"), Encoding: v.GetString("hmac-encoding")}
	}
	return cfg, errs
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

func newRootCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:           "forwarder",
		Short:         "Forward PersistentVolume and VolumeSnapshot changes to the ocpv-dr receiver",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := cliconfig.NewViper(cmd, "FORWARDER")
			if err != nil {
				return err
			}
			cfg, restCfg, err := forwarderConfig(v)
			if err != nil {
				return err
			}
			log, err := cliconfig.NewLogger(v.GetString("log-level"))
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			f, err := forwarder.New(cfg, restCfg, log, newRegistry())
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			log.Info("forwarder starting", zap.String("version", version.Version), zap.String("webhook", sender.Redact(cfg.Sender.URL)),
				zap.String("cluster", cfg.ClusterName), zap.Bool("leaderElect", cfg.LeaderElect))
			return f.Run(ctx)
		},
	}
	addSenderFlags(cmd)
	fl := cmd.Flags()
	fl.String("kubeconfig", "", "kubeconfig file (default: in-cluster, then KUBECONFIG)")
	fl.Bool("leader-elect", false, "run as one of several replicas; only the Lease holder sends")
	fl.String("lease-namespace", "", "namespace of the leader-election Lease (default: POD_NAMESPACE)")
	fl.String("lease-name", "ocpdr-forwarder", "name of the leader-election Lease")
	fl.Duration("lease-duration", 0, "leader-election lease duration (default 137s)")
	fl.Duration("renew-deadline", 0, "leader-election renew deadline (default 107s)")
	fl.Duration("retry-period", 0, "leader-election retry period (default 26s)")
	fl.String("pv-label-selector", "", "only PVs matching this label selector")
	fl.StringSlice("storage-classes", nil, "only PVs of these storage classes (default: all)")
	fl.StringSlice("snapshot-namespaces", nil, "only VolumeSnapshots in these namespaces (default: all)")
	fl.Int("workers", 4, "concurrent deliveries (one object is never sent by two at once)")
	fl.Duration("flush-timeout", 0, "time to deliver pending events at shutdown (default 10s)")
	fl.Duration("crd-poll-interval", 0, "how often to look for the VolumeSnapshot CRD while it is absent (default 30s)")
	cmd.AddCommand(newWatchExportsCommand())
	return cmd
}

func forwarderConfig(v *cliconfig.Values) (forwarder.Config, *rest.Config, error) {
	sc, errs := senderConfig(v)
	cfg := forwarder.Config{
		ClusterName: v.GetString("cluster-name"), Sender: sc,
		PVLabelSelector: v.GetString("pv-label-selector"), StorageClasses: v.GetStringSlice("storage-classes"),
		SnapshotNamespaces: v.GetStringSlice("snapshot-namespaces"), Workers: v.GetInt("workers"),
		FlushTimeout: v.GetDuration("flush-timeout"), CRDPollInterval: v.GetDuration("crd-poll-interval"),
		MetricsAddr: v.GetString("metrics-addr"), LeaderElect: v.GetBool("leader-elect"),
		LeaseNamespace: v.GetString("lease-namespace"), LeaseName: v.GetString("lease-name"),
		LeaseDuration: v.GetDuration("lease-duration"), RenewDeadline: v.GetDuration("renew-deadline"), RetryPeriod: v.GetDuration("retry-period"),
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	restCfg, err := kubeConfig(v.GetString("kubeconfig"))
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return cfg, nil, fmt.Errorf("invalid configuration:\n%w", errors.Join(errs...))
	}
	return cfg, restCfg, nil
}

func kubeConfig(path string) (*rest.Config, error) {
	if path == "" {
		if c, err := rest.InClusterConfig(); err == nil {
			return c, nil
		}
		path = os.Getenv("KUBECONFIG")
	}
	if path == "" {
		return nil, errors.New("no cluster access: not in a cluster, and neither --kubeconfig nor KUBECONFIG is set")
	}
	c, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return c, nil
}
