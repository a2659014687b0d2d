//go:build cgo && !purego

package blas

// wantBackend is the implementation this build must have compiled in.
const wantBackend = "openblas"
