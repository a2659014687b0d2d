// Package cputime reads the CPU time this process has used, which the
// benchmarks report beside the wall clock: on a busy machine a steadier
// figure.
package cputime
