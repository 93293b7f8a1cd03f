// Package cliconfig is the configuration plumbing both commands share:
// flags, <PREFIX>_* environment variables and an optional --config file
// (viper, in that order of precedence), secrets from the environment or a
// file, and the zap logger.
package cliconfig

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"
	"go.uber.org/zap"
)

// NewViper binds cmd's flags, <envPrefix>_<FLAG> variables and the file
// named by the --config flag, if any.
func NewViper(cmd *cobra.Command, envPrefix string) (*viper.Viper, error) {
	v := viper.New()
	v.SetEnvPrefix(envPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	if err := v.BindPFlags(cmd.Flags()); err != nil {
		return nil, fmt.Errorf("flags: %w", err)
	}
	if f := v.GetString("config"); f != "" {
		v.SetConfigFile(f)
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("config file %s: %w", f, err)
		}
	}
	return v, nil
}

// Secret returns the first non-empty of the environment variables named,
// else the trimmed content of the file the fileKey flag names, else "".
// Secrets never come from flags, so they stay out of process listings.
func Secret(v *viper.Viper, fileKey string, envs ...string) (string, error) {
	for _, e := range envs {
		if s := os.Getenv(e); s != "" {
			return s, nil
		}
	}
	f := v.GetString(fileKey)
	if f == "" {
		return "", nil
	}
	b, err := os.ReadFile(f)
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
