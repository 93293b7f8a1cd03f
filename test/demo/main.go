// Command demo walks through ocpv-dr's three modes on the lab started by
// `make lab-up`, printing each step and its result (`make demo`).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ocpv-dr/ocpv-dr/test/e2e"
	"github.com/ocpv-dr/ocpv-dr/test/lab"
)

func main() {
	labDir := flag.String("lab", ".lab", "lab directory (make lab-up)")
	bin := flag.String("bin", ".cache/bin", "directory with forwarder, receiver and labsim")
	work := flag.String("work", ".lab/demo", "where reports and logs go")
	flag.Parse()
	if err := run(*labDir, *bin, *work); err != nil {
		fmt.Fprintln(os.Stderr, "\ndemo failed:", err)
		os.Exit(1)
	}
}

func run(labDir, bin, work string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	l, err := lab.Load(labDir)
	if err != nil {
		return fmt.Errorf("%w (start the lab with `make lab-up`)", err)
	}
	root, err := lab.RepoRoot()
	if err != nil {
		return err
	}
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	if err := os.RemoveAll(work); err != nil {
		return fmt.Errorf("clean %s: %w", work, err)
	}
	f, err := e2e.New(e2e.Options{Lab: l, Root: root, Bin: abs(bin), WorkDir: abs(work), Out: os.Stdout})
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Printf("ocpv-dr demo on the lab in %s\n", l.Dir)
	if err := f.Run(ctx); err != nil {
		return err
	}
	fmt.Println("\nDone. `make lab-down` stops the lab and removes .lab/.")
	return nil
}
