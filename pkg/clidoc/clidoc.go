// Package clidoc renders a cobra command tree as a Markdown configuration
// reference (flags, environment variables, defaults), so the README's
// reference is generated from the code and cannot drift.
package clidoc

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Markdown renders cmd and its subcommands. envPrefix is the viper
// environment prefix (e.g. "FORWARDER"); every flag is also read from
// <PREFIX>_<FLAG_WITH_UNDERSCORES>.
func Markdown(cmd *cobra.Command, envPrefix string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<!-- Generated from the code by `go test ./cmd/... -update`; do not edit. -->\n\n")
	render(&b, cmd, envPrefix, 1)
	return b.String()
}

func render(b *strings.Builder, cmd *cobra.Command, envPrefix string, level int) {
	fmt.Fprintf(b, "%s `%s`\n\n%s\n\n", strings.Repeat("#", level), cmd.CommandPath(), cmd.Short)
	if cmd.Long != "" {
		fmt.Fprintf(b, "%s\n\n", cmd.Long)
	}
	var rows []string
	cmd.NonInheritedFlags().VisitAll(func(f *pflag.Flag) {
		if f.Hidden || f.Name == "help" || f.Name == "version" {
			return
		}
		env := envPrefix + "_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		def := f.DefValue
		if def == "" || def == "[]" {
			def = "—"
		} else {
			def = "`" + def + "`"
		}
		rows = append(rows, fmt.Sprintf("| `--%s` | `%s` | %s | %s |", f.Name, env, def, strings.ReplaceAll(f.Usage, "|", "\\|")))
	})
	if len(rows) > 0 {
		b.WriteString("| flag | environment | default | meaning |\n|---|---|---|---|\n")
		b.WriteString(strings.Join(rows, "\n"))
		b.WriteString("\n\n")
	}
	subs := cmd.Commands()
	sort.Slice(subs, func(i, j int) bool { return subs[i].Name() < subs[j].Name() })
	for _, c := range subs {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		render(b, c, envPrefix, level+1)
	}
}
