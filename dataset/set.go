package dataset

import "fmt"

// Set is a data set held in memory: a classification set (Labels) or a
// regression set (Targets, with Labels nil).
type Set struct {
	// X holds the features, [N, Dim] row-major. MNIST pixels are scaled to
	// [0, 1] by dividing by 255, with no other normalisation.
	X []float32
	// Labels holds the class of each example, [N], each in [0, Classes).
	// It is nil for a regression set.
	Labels []int32
	// Targets holds the real-valued targets of a regression set (loss
	// mse), [N, Outputs] row-major; nil for a classification set.
	Targets []float32
	// Outputs is the number of targets per example (0: no targets).
	Outputs int
	// N is the number of examples and Dim the number of features of each.
	N, Dim int
	// Classes is the number of classes: 10 for MNIST, the largest label
	// plus one for CSV.
	Classes int
}

// Gather copies the examples idx into caller-owned buffers: x receives
// len(idx)*Dim features and labels len(idx) labels (zeros for a regression
// set, which has none; its targets come from GatherTargets). It does not
// allocate. It panics if a buffer has the wrong length or an index is out
// of range.
func (s *Set) Gather(idx []int, x []float32, labels []int32) {
	if len(x) != len(idx)*s.Dim || len(labels) != len(idx) {
		panic(fmt.Sprintf("dataset: Gather of %d examples of dim %d into buffers of len %d and %d, want %d and %d",
			len(idx), s.Dim, len(x), len(labels), len(idx)*s.Dim, len(idx)))
	}
	for i, j := range idx {
		if j < 0 || j >= s.N {
			panic(fmt.Sprintf("dataset: Gather index %d out of range [0,%d)", j, s.N))
		}
		copy(x[i*s.Dim:(i+1)*s.Dim], s.X[j*s.Dim:(j+1)*s.Dim])
		if s.Labels != nil {
			labels[i] = s.Labels[j]
		} else {
			labels[i] = 0
		}
	}
}

// GatherTargets copies the targets of the examples idx into t, which must
// hold len(idx)*Outputs values. It does not allocate. It panics if t has the
// wrong length, an index is out of range, or s has no targets.
func (s *Set) GatherTargets(idx []int, t []float32) {
	if s.Outputs == 0 || len(t) != len(idx)*s.Outputs {
		panic(fmt.Sprintf("dataset: GatherTargets of %d examples with %d targets each into a buffer of len %d, want %d",
			len(idx), s.Outputs, len(t), len(idx)*s.Outputs))
	}
	o := s.Outputs
	for i, j := range idx {
		if j < 0 || j >= s.N {
			panic(fmt.Sprintf("dataset: GatherTargets index %d out of range [0,%d)", j, s.N))
		}
		copy(t[i*o:(i+1)*o], s.Targets[j*o:(j+1)*o])
	}
}

// Subset returns the first n examples as a view sharing memory with s; its
// slices are capped so that appending to them never writes into s. An n
// larger than s.N gives all of s. It panics if n is negative.
func (s *Set) Subset(n int) *Set {
	if n < 0 {
		panic(fmt.Sprintf("dataset: Subset(%d): n must not be negative", n))
	}
	n = min(n, s.N)
	sub := &Set{
		X:       s.X[: n*s.Dim : n*s.Dim],
		N:       n,
		Dim:     s.Dim,
		Classes: s.Classes,
		Outputs: s.Outputs,
	}
	if s.Labels != nil {
		sub.Labels = s.Labels[:n:n]
	}
	if s.Targets != nil {
		sub.Targets = s.Targets[: n*s.Outputs : n*s.Outputs]
	}
	return sub
}
