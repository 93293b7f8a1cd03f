//go:build tools

// Package tools pins the S3 gateway the lab runs.
package tools

import _ "github.com/versity/versitygw/cmd/versitygw"
