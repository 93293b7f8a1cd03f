// Command labsim runs the lab's simulated Velero and KubeVirt controllers and
// writes Velero-format backups into the lab S3 (see package sim).
//
//	labsim controllers --lab .lab [--guest-api=false]
//	labsim backup --lab .lab --name demo-backup --namespace demo-vm
//	labsim guest-check <disk image>
//
// controllers also serves KubeVirt's freeze/unfreeze API for the primary
// (registered as an aggregated API) and runs the simulated guests of the
// VMs annotated ocpv-dr.io/sim-guest: writer, unless --guest-api=false.
// guest-check prints a simulated guest's disk image consistency level, or
// the tear (exit status 1).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"
	"k8s.io/client-go/dynamic"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
	"github.com/ocpv-dr/ocpv-dr/test/sim"
	"github.com/ocpv-dr/ocpv-dr/test/sim/guest"
)

type list []string

func (l *list) String() string     { return fmt.Sprint(*l) }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: labsim controllers|backup [flags] | labsim guest-check <disk image>")
		os.Exit(2)
	}
	if os.Args[1] == "guest-check" {
		os.Exit(guestCheck(os.Args[2:]))
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	labDir := fs.String("lab", ".lab", "lab directory")
	name := fs.String("name", "", "backup name")
	phase := fs.String("phase", "Completed", "backup status.phase")
	guestAPI := fs.Bool("guest-api", true, "controllers: serve the simulated KubeVirt freeze/unfreeze API and guests on the primary")
	var namespaces list
	fs.Var(&namespaces, "namespace", "namespace to back up (repeatable)")
	_ = fs.Parse(os.Args[2:])
	if err := run(os.Args[1], *labDir, *name, *phase, namespaces, *guestAPI); err != nil {
		fmt.Fprintln(os.Stderr, "labsim:", err)
		os.Exit(1)
	}
}

func clients(s *lab.Site) (dynamic.Interface, error) {
	rc, err := s.RESTConfig()
	if err != nil {
		return nil, err
	}
	return dynamic.NewForConfig(rc)
}

// guestCheck checks disk images; 0 when all are consistent, 1 on a tear
// or error, 2 on usage.
func guestCheck(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: labsim guest-check <disk image>...")
		return 2
	}
	code := 0
	for _, p := range args {
		res, err := guest.Check(p)
		if err != nil {
			fmt.Printf("%s: %v\n", p, err)
			code = 1
			continue
		}
		fmt.Printf("%s: %s\n", p, res)
	}
	return code
}

func run(cmd, labDir, name, phase string, namespaces []string, guestAPI bool) error {
	l, err := lab.Load(labDir)
	if err != nil {
		return err
	}
	primary, err := clients(&l.Primary)
	if err != nil {
		return err
	}
	dr, err := clients(&l.DR)
	if err != nil {
		return err
	}
	s3, err := l.S3Client()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log, _ := zap.NewDevelopment()
	switch cmd {
	case "backup":
		if name == "" || len(namespaces) == 0 {
			return fmt.Errorf("backup needs --name and at least one --namespace")
		}
		if err := sim.WriteBackup(ctx, primary, s3, l.S3Bucket, sim.BackupOptions{Name: name, Namespaces: namespaces, Phase: phase}); err != nil {
			return err
		}
		fmt.Printf("backup %s of %v written to s3://%s/backups/%s/\n", name, namespaces, l.S3Bucket, name)
		return nil
	case "controllers":
		sites := sim.Sites{Primary: primary, DR: dr, S3: s3, Bucket: l.S3Bucket}
		if guestAPI {
			api, err := startGuestAPI(ctx, l, log)
			if err != nil {
				return err
			}
			defer closeGuestAPI(api, log)
			sites.Guests = api.Guests
		}
		log.Info("simulating Velero (DR) and KubeVirt (both sites)")
		sim.RunControllers(ctx, sites, 300*time.Millisecond, log)
		return nil
	default:
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// startGuestAPI serves the simulated virt-api at once and registers it in
// the background, so the controllers start without waiting for the
// aggregator; a failed registration is logged (freezes then answer 404).
func startGuestAPI(ctx context.Context, l *lab.Lab, log *zap.Logger) (*sim.GuestAPI, error) {
	cfg, err := l.Primary.RESTConfig()
	if err != nil {
		return nil, err
	}
	api, err := sim.NewGuestAPI(cfg, l.Primary.ExportRoot, log)
	if err != nil {
		return nil, fmt.Errorf("simulated KubeVirt freeze API (--guest-api=false runs without it): %w", err)
	}
	go func() {
		if err := api.Register(ctx); err != nil {
			log.Error("simulated KubeVirt freeze API not registered: freeze/unfreeze are not served", zap.Error(err))
			return
		}
		log.Info("simulated KubeVirt freeze/unfreeze API registered", zap.String("url", api.Server.URL()),
			zap.String("freezeLog", api.Server.URL()+"/debug/freezes"))
	}()
	return api, nil
}

func closeGuestAPI(api *sim.GuestAPI, log *zap.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := api.Close(ctx); err != nil {
		log.Warn("simulated KubeVirt freeze API: close", zap.Error(err))
	}
}
