// Command labsim runs the lab's simulated Velero and KubeVirt controllers and
// writes Velero-format backups into the lab S3 (see package sim).
//
//	labsim controllers --lab .lab
//	labsim backup --lab .lab --name demo-backup --namespace demo-vm
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
)

type list []string

func (l *list) String() string     { return fmt.Sprint(*l) }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: labsim controllers|backup [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	labDir := fs.String("lab", ".lab", "lab directory")
	name := fs.String("name", "", "backup name")
	phase := fs.String("phase", "Completed", "backup status.phase")
	var namespaces list
	fs.Var(&namespaces, "namespace", "namespace to back up (repeatable)")
	_ = fs.Parse(os.Args[2:])
	if err := run(os.Args[1], *labDir, *name, *phase, namespaces); err != nil {
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

func run(cmd, labDir, name, phase string, namespaces []string) error {
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
		log.Info("simulating Velero (DR) and KubeVirt (both sites)")
		sim.RunControllers(ctx, sim.Sites{Primary: primary, DR: dr, S3: s3, Bucket: l.S3Bucket}, 300*time.Millisecond, log)
		return nil
	default:
		return fmt.Errorf("unknown command %q", cmd)
	}
}
