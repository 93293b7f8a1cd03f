// Command labctl starts, checks and stops the ocpv-dr lab (make lab-up,
// make lab-status, make lab-down).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: labctl up|down|status [--dir DIR] [--block 127.0.0]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("labctl "+os.Args[1], flag.ExitOnError)
	dir := fs.String("dir", ".lab", "lab state directory")
	block := fs.String("block", "127.0.0", "loopback /24 the lab uses (first three octets)")
	_ = fs.Parse(os.Args[2:])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "up":
		err = up(ctx, *dir, *block)
	case "down":
		err = down(*dir)
	case "status":
		err = status(ctx, *dir)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "labctl:", err)
		os.Exit(1)
	}
}

func up(ctx context.Context, dir, block string) error {
	if l, err := lab.Load(dir); err == nil {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := l.Check(cctx); err == nil {
			fmt.Printf("lab already running in %s (env: %s)\n", l.Dir, l.EnvFile)
			return nil
		}
		fmt.Println("a previous lab in", dir, "is unhealthy: stopping it first")
	}
	if err := down(dir); err != nil {
		return err
	}
	start := time.Now()
	l, err := lab.Start(ctx, lab.Options{Dir: dir, Block: block, Detach: true, Logf: func(f string, a ...any) { fmt.Printf(f+"\n", a...) }})
	if err != nil {
		return errors.Join(err, fmt.Errorf("partial lab stopped: %w", down(dir)))
	}
	fmt.Printf("lab up in %s:\n", time.Since(start).Round(time.Millisecond))
	fmt.Printf("  primary: kube-apiserver %s, NFS host %s:%d export %s\n", l.Primary.APIServerURL, l.Primary.NFSHost, l.Primary.SSHPort, l.Primary.ExportRoot)
	fmt.Printf("  dr:      kube-apiserver %s, NFS host %s:%d export %s\n", l.DR.APIServerURL, l.DR.NFSHost, l.DR.SSHPort, l.DR.ExportRoot)
	fmt.Printf("  s3:      %s bucket %s\n", l.S3Endpoint, l.S3Bucket)
	fmt.Printf("  env:     source %s\n  ansible: -i %s\n  logs:    %s\n", l.EnvFile, l.Inventory, l.LogDir)
	return nil
}

func down(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	abs, _ := filepath.Abs(dir)
	l := &lab.Lab{Dir: abs}
	if err := l.Stop(); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	fmt.Println("lab stopped and", dir, "removed")
	return nil
}

func status(ctx context.Context, dir string) error {
	l, err := lab.Load(dir)
	if err != nil {
		return fmt.Errorf("no lab in %s: %w", dir, err)
	}
	if err := l.Check(ctx); err != nil {
		return err
	}
	fmt.Println("lab healthy in", l.Dir)
	return nil
}
