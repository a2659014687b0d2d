package dataset

import "fmt"

// Set is a data set held in memory: a classification set (Labels) or a
// regression set (Targets, with Labels nil). Its features are float32 (X) or
// bytes that stand for float32 values (Bytes): MNIST is held as its pixels,
// a quarter of the memory, and converted a batch at a time by Gather.
type Set struct {
	// X holds the features as float32, [N, Dim] row-major; nil when Bytes
	// holds them. Read features through Gather or Features, which serve both
	// forms.
	X []float32
	// Bytes holds the features as bytes when X is nil, [N, Dim] row-major:
	// byte b stands for the float32 value float32(b)/ByteScale, divided in
	// float32. MNIST pixels are held so, with ByteScale 255: features in
	// [0, 1], with no other normalisation.
	Bytes []byte
	// BytesFile is the cache file Bytes is a read-only shared mapping of,
	// when the bytes are shared with other processes (LoadMNIST); empty
	// when they are private to this process.
	BytesFile string
	// ByteScale is the divisor of Bytes (255 for MNIST); unused with X.
	ByteScale float32
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

// byteValues is the float32 value of each byte of a byte-backed set.
func (s *Set) byteValues() (t [256]float32) {
	if s.ByteScale == 255 {
		return pixelScale
	}
	for i := range t {
		t[i] = float32(i) / s.ByteScale
	}
	return t
}

// Gather copies the examples idx into caller-owned buffers: x receives
// len(idx)*Dim features as float32 (converted from Bytes in a byte-backed
// set) and labels len(idx) labels (zeros for a regression set, which has
// none; its targets come from GatherTargets). It does not allocate. It
// panics if a buffer has the wrong length or an index is out of range.
func (s *Set) Gather(idx []int, x []float32, labels []int32) {
	if len(x) != len(idx)*s.Dim || len(labels) != len(idx) {
		panic(fmt.Sprintf("dataset: Gather of %d examples of dim %d into buffers of len %d and %d, want %d and %d",
			len(idx), s.Dim, len(x), len(labels), len(idx)*s.Dim, len(idx)))
	}
	var values [256]float32
	if s.X == nil {
		values = s.byteValues()
	}
	for i, j := range idx {
		if j < 0 || j >= s.N {
			panic(fmt.Sprintf("dataset: Gather index %d out of range [0,%d)", j, s.N))
		}
		dst := x[i*s.Dim : (i+1)*s.Dim]
		if s.X != nil {
			copy(dst, s.X[j*s.Dim:(j+1)*s.Dim])
		} else {
			for k, b := range s.Bytes[j*s.Dim : (j+1)*s.Dim] {
				dst[k] = values[b]
			}
		}
		if s.Labels != nil {
			labels[i] = s.Labels[j]
		} else {
			labels[i] = 0
		}
	}
}

// Features copies the features of the examples [lo, hi) into x, which must
// hold (hi-lo)*Dim values, as float32 (converted from Bytes in a byte-backed
// set). It does not allocate. It panics unless 0 <= lo <= hi <= N and x has
// the right length.
func (s *Set) Features(lo, hi int, x []float32) {
	if lo < 0 || lo > hi || hi > s.N || len(x) != (hi-lo)*s.Dim {
		panic(fmt.Sprintf("dataset: Features(%d, %d) of %d examples of dim %d into a buffer of len %d: want 0 <= lo <= hi <= %d and len %d",
			lo, hi, s.N, s.Dim, len(x), s.N, (hi-lo)*s.Dim))
	}
	if s.X != nil {
		copy(x, s.X[lo*s.Dim:hi*s.Dim])
		return
	}
	values := s.byteValues()
	for k, b := range s.Bytes[lo*s.Dim : hi*s.Dim] {
		x[k] = values[b]
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
		N:         n,
		Dim:       s.Dim,
		Classes:   s.Classes,
		Outputs:   s.Outputs,
		ByteScale: s.ByteScale,
	}
	if s.X != nil {
		sub.X = s.X[: n*s.Dim : n*s.Dim]
	} else {
		sub.Bytes = s.Bytes[: n*s.Dim : n*s.Dim]
		sub.BytesFile = s.BytesFile
	}
	if s.Labels != nil {
		sub.Labels = s.Labels[:n:n]
	}
	if s.Targets != nil {
		sub.Targets = s.Targets[: n*s.Outputs : n*s.Outputs]
	}
	return sub
}
