package train

import (
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/internal/usage"
	"github.com/ringtrain/ringtrain/nn"
)

func TestFingerprintDiff(t *testing.T) {
	run := Fingerprint{GEMM: "openblas", Kernel: "Cooperlake", Fixed: "avx512", Threads: 1, GOARCH: "amd64", Data: strings.Repeat("ab", 32)}
	with := func(f func(*Fingerprint)) Fingerprint {
		fp := run
		f(&fp)
		return fp
	}
	for _, tc := range []struct {
		name  string
		here  Fingerprint
		diff  string
		check []string // substrings of Check's message
	}{
		{"equal", run, "", nil},
		{"backend", with(func(f *Fingerprint) { f.GEMM, f.Kernel = "go", "generic" }),
			"GEMM backend go here, openblas in the run",
			[]string{"the GEMM backend go differs from the run's openblas", "libopenblas"}},
		{"kernel", with(func(f *Fingerprint) { f.Kernel = "Haswell" }),
			"GEMM kernel Haswell here, Cooperlake in the run",
			[]string{"the GEMM kernel Haswell differs from the run's Cooperlake", "OPENBLAS_CORETYPE=Cooperlake"}},
		{"fixed", with(func(f *Fingerprint) { f.Fixed = "gemm" }),
			"fixed-point kernel gemm here, avx512 in the run",
			[]string{"the fixed-point kernel gemm differs from the run's avx512", "unset RINGTRAIN_FIXED_KERNEL"}},
		{"threads", with(func(f *Fingerprint) { f.Threads = 2 }),
			"threads 2 here, 1 in the run",
			[]string{"--threads 2 differs from the run's 1 (the fingerprint of exact training: GEMM backend and kernel, fixed-point kernel, threads, GOARCH, data); start it with --threads 1"}},
		{"goarch", with(func(f *Fingerprint) { f.GOARCH = "arm64" }),
			"GOARCH arm64 here, amd64 in the run",
			[]string{"GOARCH arm64 differs from the run's amd64", "run a build for GOARCH=amd64"}},
		{"data", with(func(f *Fingerprint) { f.Data = strings.Repeat("cd", 32) }),
			"training data sha256 cdcdcdcdcdcd here, sha256 abababababab in the run",
			[]string{"the training data (sha256 cdcdcdcdcdcd) differs from the run's (sha256 abababababab)", "--data"}},
		// The first component that differs is named.
		{"threads and data", with(func(f *Fingerprint) { f.Threads, f.Data = 4, "" }),
			"threads 4 here, 1 in the run", []string{"--threads 4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.here.Diff(run); got != tc.diff {
				t.Fatalf("Diff = %q, want %q", got, tc.diff)
			}
			err := tc.here.Check(run)
			if tc.check == nil {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				if tc.here.Sum32() != run.Sum32() {
					t.Fatal("equal fingerprints, different Sum32")
				}
				return
			}
			if err == nil || !usage.Is(err) {
				t.Fatalf("Check = %v, want a usage error", err)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Fatalf("Check's message is not one line: %q", msg)
			}
			for _, s := range tc.check {
				if !strings.Contains(msg, s) {
					t.Fatalf("Check = %q, want it to contain %q", msg, s)
				}
			}
			if tc.here.Sum32() == run.Sum32() {
				t.Fatal("different fingerprints, equal Sum32")
			}
		})
	}
}

func TestNewFingerprint(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Threads = 3
	set := &dataset.Set{X: []float32{0, 0.5, 1, 0.25}, Labels: []int32{1, 0}, N: 2, Dim: 2, Classes: 2}
	fp := NewFingerprint(cfg, set)
	want := Fingerprint{GEMM: nn.BLASBackend(), Kernel: nn.BLASBitsKernel(), Fixed: fixedWay(), Threads: 3, GOARCH: runtime.GOARCH, Data: DataDigest(set)}
	if fp != want {
		t.Fatalf("NewFingerprint = %+v, want %+v", fp, want)
	}
	if fp.GEMM == "" || fp.Kernel == "" || len(fp.Data) != 64 {
		t.Fatalf("NewFingerprint = %+v: a component is missing", fp)
	}
}

// TestFingerprintKernelClass: the pure-Go avx512 and avx2-fma kernels
// compute the same bits, so a fingerprint names both "avx2-fma": AVX-512 and
// AVX2-only machines train together, and a run or checkpoint recorded as
// avx2-fma (or, before Kernel was a class, as avx512) is accepted on either.
// Other kernels still differ, with a fix RINGTRAIN_GEMM_KERNEL can apply.
func TestFingerprintKernelClass(t *testing.T) {
	if nn.BLASBackend() == "go" && nn.BLASKernel() == "avx512" {
		if k := NewFingerprint(DefaultConfig(), &dataset.Set{}).Kernel; k != "avx2-fma" {
			t.Fatalf("NewFingerprint.Kernel = %q on the avx512 kernel, want avx2-fma", k)
		}
	}
	fp := func(kernel string) Fingerprint {
		return Fingerprint{GEMM: "go", Kernel: kernel, Fixed: "gemm", Threads: 1, GOARCH: "amd64", Data: strings.Repeat("ab", 32)}
	}
	for _, tc := range []struct {
		here, run string
		check     []string // substrings of Check's message; nil: accepted
	}{
		{"avx2-fma", "avx2-fma", nil},
		{"avx2-fma", "avx512", nil}, // a fingerprint from before the classes
		{"avx512", "avx2-fma", nil},
		{"generic", "avx2-fma", []string{"the GEMM kernel generic differs from the run's avx2-fma", "RINGTRAIN_GEMM_KERNEL=avx2 "}},
		{"generic", "avx512", []string{"the GEMM kernel generic differs from the run's avx2-fma", "RINGTRAIN_GEMM_KERNEL=avx2 "}},
		{"avx2-fma", "generic", []string{"the GEMM kernel avx2-fma differs from the run's generic", "RINGTRAIN_GEMM_KERNEL=generic "}},
	} {
		err := fp(tc.here).Check(fp(tc.run))
		if tc.check == nil {
			if err != nil {
				t.Errorf("kernel %s here, %s in the run: Check = %v, want nil", tc.here, tc.run, err)
			}
			if d := fp(tc.here).Diff(fp(tc.run)); d != "" {
				t.Errorf("kernel %s here, %s in the run: Diff = %q, want none", tc.here, tc.run, d)
			}
			continue
		}
		if err == nil || !usage.Is(err) {
			t.Errorf("kernel %s here, %s in the run: Check = %v, want a usage error", tc.here, tc.run, err)
			continue
		}
		for _, s := range tc.check {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("kernel %s here, %s in the run: Check = %q, want it to contain %q", tc.here, tc.run, err, s)
			}
		}
	}
	// OpenBLAS's core names are classes of their own.
	ob := func(kernel string) Fingerprint { f := fp(kernel); f.GEMM = "openblas"; return f }
	if ob("SkylakeX").Check(ob("Cooperlake")) == nil {
		t.Error("OpenBLAS's SkylakeX and Cooperlake kernels compare equal")
	}
	if ob("avx512").Check(ob("avx2-fma")) == nil {
		t.Error(`an OpenBLAS core named "avx512" compares equal to "avx2-fma"`)
	}
}

// TestDataDigest: the digest is fixed for given values (the same on every
// architecture) and changes with any value, label, target or size.
func TestDataDigest(t *testing.T) {
	classes := func() *dataset.Set {
		return &dataset.Set{X: []float32{0, 0.5, 1, 0.25, -2, 3}, Labels: []int32{1, 0, 2}, N: 3, Dim: 2, Classes: 3}
	}
	targets := func() *dataset.Set {
		return &dataset.Set{X: []float32{0, 0.5, 1, 0.25, -2, 3}, Targets: []float32{1.5, -1, 0.125}, N: 3, Dim: 2, Outputs: 1}
	}
	// The digests, pinned (from Python's struct.pack and hashlib.sha256 of
	// the format DataDigest documents): a change of the format changes
	// every run's fingerprint.
	for _, tc := range []struct {
		name string
		set  func() *dataset.Set
		want string
	}{
		// sha256(pack("<QQQQ", 3, 2, 3, 0) + pack("<Q6f", 6, 0, .5, 1, .25, -2, 3) + pack("<Q3i", 3, 1, 0, 2) + pack("<Q", 0))
		{"classes", classes, "15ab4ff1d2fcb01b34659d6cbf909d4c05bf7c4c71d3742f826b57c0aaae6c1f"},
		// sha256(pack("<QQQQ", 3, 2, 0, 1) + pack("<Q6f", 6, 0, .5, 1, .25, -2, 3) + pack("<Q", 0) + pack("<Q3f", 3, 1.5, -1, .125))
		{"targets", targets, "b5879c6280ddc65cd0c03ff67acb046ce1b7d40f1542a05c8f91f5883fb9e6b8"},
	} {
		if got := DataDigest(tc.set()); got != tc.want {
			t.Fatalf("%s: DataDigest = %s, want %s", tc.name, got, tc.want)
		}
		// The encoding path of big-endian hosts gives the same digest.
		if got := dataDigest(tc.set(), false); got != tc.want {
			t.Fatalf("%s: dataDigest encoded = %s, want %s", tc.name, got, tc.want)
		}
	}
	want := DataDigest(classes())
	for name, change := range map[string]func(*dataset.Set){
		"a value":    func(s *dataset.Set) { s.X[3] = 0.2500001 },
		"a label":    func(s *dataset.Set) { s.Labels[2] = 1 },
		"dims":       func(s *dataset.Set) { s.N, s.Dim = 2, 3 },
		"classes":    func(s *dataset.Set) { s.Classes = 4 },
		"negative 0": func(s *dataset.Set) { s.X[0] = float32(math.Copysign(0, -1)) },
		"targets":    func(s *dataset.Set) { s.Targets, s.Outputs = []float32{0, 0, 0}, 1 },
	} {
		s := classes()
		change(s)
		if DataDigest(s) == want {
			t.Errorf("changing %s leaves the digest", name)
		}
	}
	tg := targets()
	tg.Targets[1] = -1.0000001
	if DataDigest(tg) == DataDigest(targets()) {
		t.Error("changing a target leaves the digest")
	}
	// Longer than one chunk.
	big := &dataset.Set{X: make([]float32, 50000), Labels: make([]int32, 50000), N: 50000, Dim: 1, Classes: 1}
	d := DataDigest(big)
	if e := dataDigest(big, false); e != d {
		t.Errorf("over several chunks: encoded %s, native %s", e, d)
	}
	big.X[40000] = 1
	if DataDigest(big) == d || dataDigest(big, false) == d {
		t.Error("changing a value beyond the first chunk leaves the digest")
	}
}

// A byte-backed set has the digest of the same values held as float32, over
// several conversion chunks and a partial last one; that is, MNIST's digest
// does not depend on how the set holds its pixels.
func TestDataDigestBytes(t *testing.T) {
	const n, dim = 2*digestChunk + 5, 3
	pix := make([]byte, n*dim)
	for i := range pix {
		pix[i] = byte(i * 37)
	}
	labels := make([]int32, n)
	for i := range labels {
		labels[i] = int32(i % 10)
	}
	bytesSet := &dataset.Set{Bytes: pix, ByteScale: 255, Labels: labels, N: n, Dim: dim, Classes: 10}
	floatSet := &dataset.Set{X: make([]float32, n*dim), Labels: labels, N: n, Dim: dim, Classes: 10}
	for i, b := range pix {
		floatSet.X[i] = float32(b) / 255
	}
	want := DataDigest(floatSet)
	if got := DataDigest(bytesSet); got != want {
		t.Fatalf("byte set digest %s, float32 set %s", got, want)
	}
	if got := dataDigest(bytesSet, false); got != want {
		t.Fatalf("byte set digest, encoded: %s, want %s", got, want)
	}
	pix[n*dim-1]++ // in the partial last chunk
	if DataDigest(bytesSet) == want {
		t.Fatal("changing the last byte leaves the digest")
	}
}

// BenchmarkDataDigestMNIST hashes the real MNIST training set (47 MB of
// bytes, hashed as 188 MB of float32).
func BenchmarkDataDigestMNIST(b *testing.B) {
	dir, err := dataset.FindMNIST()
	if err != nil {
		b.Skip("no MNIST:", err)
	}
	set, _, err := dataset.Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(4*set.N*set.Dim + 4*len(set.Labels)))
	b.ResetTimer()
	for b.Loop() {
		DataDigest(set)
	}
}
