package nn

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

func TestPackedIndex(t *testing.T) {
	// p = 3: rows (0,0) (0,1) (0,2) | (1,1) (1,2) | (2,2)
	for _, c := range []struct{ i, j, want int }{{0, 0, 0}, {0, 1, 1}, {0, 2, 2}, {1, 1, 3}, {1, 2, 4}, {2, 2, 5}} {
		if got := PackedIndex(3, c.i, c.j); got != c.want {
			t.Errorf("PackedIndex(3, %d, %d) = %d, want %d", c.i, c.j, got, c.want)
		}
	}
	for p := 1; p <= 9; p++ {
		seen := make([]bool, PackedLen(p))
		for i := range p {
			for j := i; j < p; j++ {
				k := PackedIndex(p, i, j)
				if k < 0 || k >= len(seen) || seen[k] {
					t.Fatalf("p=%d: (%d,%d) at %d, out of range or taken", p, i, j, k)
				}
				seen[k] = true
			}
		}
	}
}

// lmFixture is a 3-5-2 tanh mse network and a batch of 9 examples.
func lmFixture(t *testing.T) (*Network, Batch) {
	t.Helper()
	spec := Spec{Layers: []int{3, 5, 2}, Activation: "tanh", Loss: "mse"}
	return newTestNetwork(t, spec, 31), randomBatch(rand.New(rand.NewPCG(3, 1)), spec, 9)
}

// The system Add builds is JᵀJ and Jᵀe of the Jacobian (gonum's products
// as the oracle); a batch added in shards sums to the whole batch's, and
// the loss sum is ComputeGradients'.
func TestLMSystemAdd(t *testing.T) {
	n, b := lmFixture(t)
	p := len(n.Params)
	s, err := NewLMSystem(n, 0)
	if err != nil {
		t.Fatal(err)
	}
	jtj, jte := make([]float64, PackedLen(p)), make([]float64, p)
	loss := s.Add(b, jtj, jte)

	var want mat.SymDense
	want.SymOuterK(1, s.jac.T())
	var wantE mat.VecDense
	wantE.MulVec(s.jac.T(), mat.NewVecDense(len(s.resid), s.resid))
	for i := range p {
		approx(t, "Jᵀe", jte[i], wantE.AtVec(i), 1e-12)
		for j := i; j < p; j++ {
			approx(t, "JᵀJ", jtj[PackedIndex(p, i, j)], want.At(i, j), 1e-12)
		}
	}
	approx(t, "loss sum", loss, n.Clone().ComputeGradients(b, 1), 1e-6)

	shards := []Batch{b.slice(0, 4, 3, 2), b.slice(4, 5, 3, 2)}
	sum, sumE := make([]float64, PackedLen(p)), make([]float64, p)
	var sumLoss float64
	for _, sh := range shards {
		sumLoss += s.Add(sh, sum, sumE)
	}
	for i := range sum {
		approx(t, "shards' JᵀJ", sum[i], jtj[i], 1e-12)
	}
	for i := range sumE {
		approx(t, "shards' Jᵀe", sumE[i], jte[i], 1e-12)
	}
	approx(t, "shards' loss", sumLoss, loss, 1e-12)
	if s.Add(Batch{X: []float32{}, Targets: []float32{}}, sum, sumE) != 0 {
		t.Error("an empty batch has a loss")
	}
}

// Bounds bound every entry Add produces, and report a NaN as such.
func TestLMSystemBounds(t *testing.T) {
	n, b := lmFixture(t)
	p := len(n.Params)
	s, _ := NewLMSystem(n, 0)
	bj, be, loss := s.Bounds(b)
	jtj, jte := make([]float64, PackedLen(p)), make([]float64, p)
	if l := s.Add(b, jtj, jte); l != loss {
		t.Fatalf("Bounds' loss %v, Add's %v", loss, l)
	}
	var mj, me float64
	for _, v := range jtj {
		mj = max(mj, math.Abs(v))
	}
	for _, v := range jte {
		me = max(me, math.Abs(v))
	}
	if !(mj <= bj && me <= be) || mj == 0 || me == 0 {
		t.Fatalf("largest |JᵀJ| %v, |Jᵀe| %v; bounds %v, %v", mj, me, bj, be)
	}
	if bj > 4*mj { // the diagonal is an entry: the bound is at most twice the largest
		t.Errorf("JᵀJ bound %v is loose for a largest entry %v", bj, mj)
	}
	n.Params[0] = float32(math.NaN())
	if bj, be, _ := s.Bounds(b); !math.IsNaN(bj) || !math.IsNaN(be) {
		t.Errorf("bounds with a NaN weight: %v, %v", bj, be)
	}
}

// Solve solves the damped system; a matrix that is not positive definite
// is reported.
func TestLMSystemSolve(t *testing.T) {
	n, b := lmFixture(t)
	p := len(n.Params)
	s, _ := NewLMSystem(n, 0)
	jtj, jte := make([]float64, PackedLen(p)), make([]float64, p)
	s.Add(b, jtj, jte)
	delta := make([]float64, p)
	const mu = 0.01
	if !s.Solve(jtj, jte, mu, delta) {
		t.Fatal("Solve failed on a damped Gram matrix")
	}
	for i := range p { // row i of (JᵀJ + μI)Δ - Jᵀe
		r := mu*delta[i] - jte[i]
		for j := range p {
			r += jtj[PackedIndex(p, min(i, j), max(i, j))] * delta[j]
		}
		approx(t, "residual", r, 0, 1e-9)
	}
	if s.Solve(make([]float64, PackedLen(p)), jte, 0, delta) {
		t.Error("Solve of a zero matrix with μ 0 succeeded")
	}
}

func TestLMSystemRejects(t *testing.T) {
	ce, _ := NewNetwork(Spec{Layers: []int{2, 3, 2}, Activation: "tanh", Loss: "cross_entropy"})
	var ce2 *ConfigError
	if _, err := NewLMSystem(ce, 0); !errors.As(err, &ce2) || ce2.Field != "loss" {
		t.Errorf("cross_entropy: %v, want a ConfigError on loss", err)
	}
	n, _ := NewNetwork(Spec{Layers: []int{1, 10, 1}, Activation: "tanh", Loss: "mse"})
	if _, err := NewLMSystem(n, 30); err == nil {
		t.Error("31 parameters accepted with max 30")
	}
	s, _ := NewLMSystem(n, 31)
	defer func() {
		if e, ok := recover().(*ShapeError); !ok || e.Arg != "len(jtj)" {
			t.Errorf("short jtj: panic %v, want a ShapeError on len(jtj)", e)
		}
	}()
	s.Add(Batch{X: []float32{1}, Targets: []float32{0}, N: 1}, make([]float64, 31), make([]float64, 31))
}

// Micro-shards of uneven sizes reuse the scratch: no allocation once it
// has grown to the largest.
func TestLMSystemReusesScratch(t *testing.T) {
	n, b := lmFixture(t)
	p := len(n.Params)
	s, _ := NewLMSystem(n, 0)
	jtj, jte := make([]float64, PackedLen(p)), make([]float64, p)
	small := b.slice(0, 4, 3, 2)
	s.Add(b, jtj, jte)
	if allocs := testing.AllocsPerRun(20, func() {
		s.Add(small, jtj, jte)
		s.Bounds(b)
		s.Add(b, jtj, jte)
	}); allocs != 0 {
		t.Fatalf("Add and Bounds allocate %v times per round", allocs)
	}
}
