//go:build tools

// Package tools pins the etcd commands this module builds (see ../build.sh):
// the server (go.etcd.io/etcd/server/v3), etcdctl and etcd's benchmark tool.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
	_ "go.etcd.io/etcd/v3/tools/benchmark"
)
