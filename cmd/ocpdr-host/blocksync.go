// blocksync: the block mover's two ends as subcommands. Each speaks the
// protocol on stdin/stdout, or, given a command after "--", on that
// command's stdin/stdout (e.g. `-- ssh dr ocpdr-host blocksync receive ...`);
// the result is JSON on stdout in the second case, on stderr in the first.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"

	"github.com/spf13/cobra"

	"github.com/ocpv-dr/ocpv-dr/pkg/blockmover"
	"github.com/ocpv-dr/ocpv-dr/pkg/cliconfig"
)

const envPrefix = "OCPDR_HOST"

func newBlocksyncCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "blocksync",
		Short: "Copy one large file (a VM disk image) sending only changed blocks",
	}
	cmd.AddCommand(newSendCommand(), newReceiveCommand())
	return cmd
}

func newSendCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "send --source FILE [--previous FILE] [-- RECEIVER-COMMAND...]",
		Short: "Send a file's changed blocks to a receiver",
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := cliconfig.NewViper(cmd, envPrefix)
			if err != nil {
				return err
			}
			opts := blockmover.SendOptions{Source: v.GetString("source"), Previous: v.GetString("previous"),
				BlockSize: v.GetInt64("block-size"), NoCompress: v.GetBool("no-compress")}
			if opts.Source == "" {
				return errors.New("--source is required")
			}
			return runEnd(cmd, args, func(r io.Reader, w io.Writer) (*blockmover.Result, error) {
				return blockmover.Send(opts, r, w)
			})
		},
	}
	fl := cmd.Flags()
	fl.String("source", "", "the file to send (a capture, so it does not change while read)")
	fl.String("previous", "", "the previous reflink capture of the same file: its extents spare reading unchanged blocks")
	fl.Int64("block-size", blockmover.DefaultBlockSize, "bytes per block of change detection")
	fl.Bool("no-compress", false, "never zstd-compress blocks")
	return cmd
}

func newReceiveCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "receive --root DIR --path REL [-- SENDER-COMMAND...]",
		Short: "Receive a file's changed blocks into ROOT/REL, switching it atomically",
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := cliconfig.NewViper(cmd, envPrefix)
			if err != nil {
				return err
			}
			opts := blockmover.ReceiveOptions{Root: v.GetString("root"), Path: v.GetString("path")}
			if opts.Root == "" || opts.Path == "" {
				return errors.New("--root and --path are required")
			}
			return runEnd(cmd, args, func(r io.Reader, w io.Writer) (*blockmover.Result, error) {
				return blockmover.Receive(opts, r, w)
			})
		},
	}
	fl := cmd.Flags()
	fl.String("root", "", "the DR export root; nothing outside it is written")
	fl.String("path", "", "the file's path relative to --root (no .., no symlinks, no .ocpdr* names)")
	return cmd
}

type endFunc func(r io.Reader, w io.Writer) (*blockmover.Result, error)

// runEnd runs one end over stdio, or over the peer command after "--".
func runEnd(cmd *cobra.Command, args []string, run endFunc) error {
	if cmd.ArgsLenAtDash() != 0 && len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q (a peer command goes after --)", args)
	}
	if len(args) == 0 {
		res, err := run(cmd.InOrStdin(), cmd.OutOrStdout())
		if err != nil {
			return err
		}
		return printResult(cmd.ErrOrStderr(), res)
	}
	res, err := runWithPeer(args, run)
	if err != nil {
		return err
	}
	return printResult(cmd.OutOrStdout(), res)
}

func runWithPeer(argv []string, run endFunc) (*blockmover.Result, error) {
	peer := exec.Command(argv[0], argv[1:]...) // argv, never a shell string
	peer.Stderr = os.Stderr
	in, err := peer.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	out, err := peer.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	if err := peer.Start(); err != nil {
		return nil, fmt.Errorf("start peer %s: %w", argv[0], err)
	}
	res, err := run(out, in)
	_ = in.Close()
	_, _ = io.Copy(io.Discard, out)
	if werr := peer.Wait(); werr != nil && err == nil {
		err = fmt.Errorf("peer %s: %w", argv[0], werr)
	}
	return res, err
}

func printResult(w io.Writer, res *blockmover.Result) error {
	b, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("result: %w", err)
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}
