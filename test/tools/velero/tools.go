//go:build tools

// Package tools pins the Velero server and its AWS (S3) object-store plugin
// that the lab runs against its versitygw bucket (see docs/velero.md).
package tools

import (
	_ "github.com/vmware-tanzu/velero-plugin-for-aws/velero-plugin-for-aws"
	_ "github.com/vmware-tanzu/velero/cmd/velero"
)
