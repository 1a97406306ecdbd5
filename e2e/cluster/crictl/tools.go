//go:build tools

// Package tools pins crictl, the CRI command-line client used to stop pod sandboxes
// cleanly (CNI teardown) when the cluster is brought down (see ../build.sh).
package tools

import _ "sigs.k8s.io/cri-tools/cmd/crictl"
