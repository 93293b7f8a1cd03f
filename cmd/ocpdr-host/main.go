// Command ocpdr-host is the one binary for everything ocpv-dr runs on an NFS
// host itself (not in a cluster, not in Ansible's Python): today the block
// mover (`blocksync send` on the primary, `blocksync receive` on the DR
// host, joined by the SSH connection the sync already uses). It is static
// (CGO_ENABLED=0) and needs no service: the roles copy it like the
// forwarder's watch-exports binary. See docs/block-mover.md.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/ocpv-dr/ocpv-dr/pkg/version"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ocpdr-host:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:           "ocpdr-host",
		Short:         "ocpv-dr tools that run on the NFS hosts",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.AddCommand(newBlocksyncCommand())
	return cmd
}
