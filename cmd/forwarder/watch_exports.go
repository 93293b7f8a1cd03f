package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/cliconfig"
	"github.com/ocpv-dr/ocpv-dr/pkg/exportwatch"
	"github.com/ocpv-dr/ocpv-dr/pkg/sender"
)

func newWatchExportsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "watch-exports",
		Short: "Watch an NFS export root on the primary NFS server and report which PV directory changed",
		Long: `watch-exports runs on the primary NFS server (see deploy/systemd). It watches the export root
recursively with inotify, finds the PV directory of each change (depth levels below the root), debounces
per directory (sent once quiet for --quiet, or at the latest after --max-delay) and POSTs an NFSDirectory
event. A kernel queue overflow triggers a rescan that reports every PV directory, and so does a start.
With --backend inotify (default) each directory needs one inotify watch: raise
fs.inotify.max_user_watches for large exports. --backend fanotify (Linux 5.9+, root) marks the export
root's filesystem once, whatever the number of directories; it sees every change on that filesystem and
filters by path, so it suits exports on a filesystem of their own.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := cliconfig.NewViper(cmd, "FORWARDER")
			if err != nil {
				return err
			}
			sc, errs := senderConfig(v)
			if err := sc.Validate(); err != nil {
				errs = append(errs, err)
			}
			wc := exportwatch.Config{Root: v.GetString("export-root"), Depth: v.GetInt("depth"), Quiet: v.GetDuration("quiet"),
				MaxDelay: v.GetDuration("max-delay"), Ignore: v.GetStringSlice("ignore-prefix"), Backend: v.GetString("backend")}
			if err := wc.Validate(); err != nil {
				errs = append(errs, err)
			}
			server := v.GetString("nfs-server")
			if server == "" {
				errs = append(errs, errors.New("--nfs-server is required: the address PVs name in spec.nfs.server"))
			}
			if len(errs) > 0 {
				return fmt.Errorf("invalid configuration:\n%w", errors.Join(errs...))
			}
			log, err := cliconfig.NewLogger(v.GetString("log-level"))
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			reg := newRegistry()
			wc.Logger = log
			w, err := exportwatch.New(wc, reg)
			if err != nil {
				return err
			}
			sm, err := sender.NewMetrics(reg, "exportwatch")
			if err != nil {
				return err
			}
			snd, err := sender.New(sc, log, sm)
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			if addr := v.GetString("metrics-addr"); addr != "" {
				srv, err := serveMetrics(addr, reg, log)
				if err != nil {
					return err
				}
				defer srv.Close()
			}
			log.Info("watching exports", zap.String("root", wc.Root), zap.String("server", server), zap.String("webhook", sender.Redact(sc.URL)))
			return exportwatch.Forward(ctx, w, snd, server, v.GetString("cluster-name"), log)
		},
	}
	addSenderFlags(cmd)
	fl := cmd.Flags()
	fl.String("export-root", "", "the export root as PVs name it (spec.nfs.path starts with it)")
	fl.String("nfs-server", "", "this server's address exactly as PVs name it in spec.nfs.server")
	fl.Int("depth", 1, "path levels below the root that name a PV directory")
	fl.Duration("quiet", 0, "send a directory once quiet this long (default 2s)")
	fl.Duration("max-delay", 0, "send a directory at the latest this long after its first change (default 10s)")
	fl.String("backend", "inotify", "change notification: inotify (a watch per directory) or fanotify (one filesystem mark; Linux 5.9+, root)")
	fl.StringSlice("ignore-prefix", []string{"archived-", ".ocpdr"}, "ignore PV directories whose name starts with these")
	return cmd
}
