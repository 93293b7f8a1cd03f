// Package cliconfig is the configuration plumbing both commands share:
// flags, <PREFIX>_* environment variables and an optional --config file,
// in that order of precedence, every value parsed by its flag's own parser;
// secrets from the environment or a file; and the zap logger.
package cliconfig

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.uber.org/zap"
)

// NewViper applies <envPrefix>_<FLAG> variables and the file named by
// --config (or <envPrefix>_CONFIG) to cmd's flags, then returns a viper that
// reads the flags. Precedence: command line, environment, file, default.
//
// Every value goes through the flag's own parser (pflag.Value.Set), so a
// source means the same as on the command line: lists split on commas,
// durations need a unit, "abc" is not an int, and a bad value is an error
// naming its source. Keys in the file that are not flags are errors.
func NewViper(cmd *cobra.Command, envPrefix string) (*Values, error) {
	flags := cmd.Flags()
	if err := applyEnv(flags, envPrefix); err != nil {
		return nil, err
	}
	if err := applyFile(flags); err != nil {
		return nil, err
	}
	v := viper.New()
	if err := v.BindPFlags(flags); err != nil {
		return nil, fmt.Errorf("flags: %w", err)
	}
	return &Values{Viper: v, flags: flags}, nil
}

// Values reads a command's configuration once NewViper has applied every
// source to its flags.
type Values struct {
	*viper.Viper
	flags *pflag.FlagSet
}

// EnvName is the environment variable for a flag.
func EnvName(prefix, flag string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnv sets every flag the command line left alone from its variable.
func applyEnv(flags *pflag.FlagSet, prefix string) error {
	var errs []error
	flags.VisitAll(func(f *pflag.Flag) {
		name := EnvName(prefix, f.Name)
		val, ok := os.LookupEnv(name)
		if f.Changed || !ok {
			return
		}
		if err := setFromSource(f, []string{val}); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", name, val, err))
		}
	})
	return errors.Join(errs...)
}

// applyFile sets the flags neither the command line nor the environment set
// from the --config file (YAML or JSON, keys are flag names).
func applyFile(flags *pflag.FlagSet) error {
	cf := flags.Lookup("config")
	if cf == nil || cf.Value.String() == "" {
		return nil
	}
	path := cf.Value.String()
	fv := viper.New()
	fv.SetConfigFile(path)
	if err := fv.ReadInConfig(); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	var errs []error
	for _, key := range fv.AllKeys() {
		f := flags.Lookup(key)
		if f == nil || key == "config" {
			errs = append(errs, fmt.Errorf("config file %s: unknown key %q", path, key))
			continue
		}
		if f.Changed || envSet(f) {
			continue
		}
		if err := setFromSource(f, fileValues(fv.Get(key))); err != nil {
			errs = append(errs, fmt.Errorf("config file %s: %s: %w", path, key, err))
		}
	}
	return errors.Join(errs...)
}

// envSet reports flags applyEnv already set (it runs first).
func envSet(f *pflag.Flag) bool { return f.Annotations[annotationFromSource] != nil }

const annotationFromSource = "ocpdr/from-source"

// fileValues turns a YAML value into the strings a flag parses: a list
// gives one element each.
func fileValues(v any) []string {
	if l, ok := v.([]any); ok {
		out := make([]string, 0, len(l))
		for _, e := range l {
			out = append(out, fmt.Sprint(e))
		}
		return out
	}
	return []string{fmt.Sprint(v)}
}

// setFromSource parses vals with the flag's own parser. A list flag takes
// them as its whole value (Replace); others take exactly one value.
func setFromSource(f *pflag.Flag, vals []string) error {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		var items []string
		for _, v := range vals {
			if len(vals) == 1 {
				items = append(items, splitList(v)...)
			} else {
				items = append(items, v)
			}
		}
		if err := sv.Replace(items); err != nil {
			return err
		}
	} else {
		if len(vals) != 1 {
			return fmt.Errorf("a list where one %s value is expected", f.Value.Type())
		}
		if err := f.Value.Set(vals[0]); err != nil {
			return err
		}
	}
	if f.Annotations == nil {
		f.Annotations = map[string][]string{}
	}
	f.Annotations[annotationFromSource] = []string{"1"}
	return nil
}

// splitList splits a list given as one string on commas, trimming spaces
// and dropping empty items ("a, b," is [a b]).
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Secret returns, in order: the file the fileKey flag names when it was
// given on the command line; else the first non-empty of the environment
// variables named; else the file the flag names from the environment or the
// config file; else "". Secrets never come from flags, so they stay out of
// process listings.
func (v *Values) Secret(fileKey string, envs ...string) (string, error) {
	if f := v.flags.Lookup(fileKey); f != nil && f.Changed {
		return readSecret(fileKey, f.Value.String())
	}
	for _, e := range envs {
		if s := os.Getenv(e); s != "" {
			return s, nil
		}
	}
	return readSecret(fileKey, v.GetString(fileKey))
}

func readSecret(fileKey, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", fileKey, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// NewLogger builds a production (JSON) zap logger at level.
func NewLogger(level string) (*zap.Logger, error) {
	lvl, err := zap.ParseAtomicLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	c := zap.NewProductionConfig()
	c.Level = lvl
	return c.Build()
}
