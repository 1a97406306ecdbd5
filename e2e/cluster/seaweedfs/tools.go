//go:build tools

// Package tools pins the SeaweedFS command this module builds (see ../build.sh):
// weed, run by up.sh as the cluster's S3-compatible object store.
package tools

import (
	_ "github.com/seaweedfs/seaweedfs/weed"
)
