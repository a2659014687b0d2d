package train

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"runtime"
	"unsafe"

	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/internal/usage"
	"github.com/ringtrain/ringtrain/nn"
)

// Fingerprint is what, besides the Spec, can change the bits of exact
// training: the matrix multiply (GEMM backend and the kernel it runs on this
// CPU), the BLAS threads per worker, GOARCH, and the training data. Workers
// with equal Specs and equal Fingerprints compute the same parameters, bit
// for bit, at any worker count; so every worker of an exact run states its
// Fingerprint before it registers (the run's is stored in etcd by the first)
// and, as a digest (Sum32), at every generation's start, and one that
// differs is refused.
type Fingerprint struct {
	// GEMM is the matrix multiply compiled in: "openblas" or "go".
	GEMM string `json:"gemm"`
	// Kernel is the GEMM kernel on this machine by the bits it computes
	// (nn.BLASBitsKernel): OpenBLAS's core name (e.g. "Haswell",
	// "SkylakeX"), or the pure-Go backend's "avx2-fma" (its avx512 kernel
	// as well as its avx2-fma one, which compute the same bits, so AVX-512
	// and AVX2-only machines train together) or "generic"
	// (RINGTRAIN_GEMM_KERNEL selects it). A fingerprint recorded as
	// "avx512", before Kernel was a class, compares as "avx2-fma".
	Kernel string `json:"kernel"`
	// Fixed is how exact training takes a micro-shard's weight gradient to
	// fixed point: "avx512" (nn.FixedKernel: in registers, its own sum
	// order), or "gemm" (the GEMM above, then a conversion). With the
	// pure-Go FMA kernels (Kernel "avx2-fma") the two give the same bits, so
	// such machines record "gemm" either way and mix freely.
	Fixed string `json:"fixed"`
	// Threads is the BLAS thread count per worker (--threads).
	Threads int `json:"threads"`
	// GOARCH is the architecture the binary was built for.
	GOARCH string `json:"goarch"`
	// Data is the training set's digest (DataDigest): hex SHA-256.
	Data string `json:"data"`
}

// NewFingerprint is this process's fingerprint for cfg's threads and the
// training set data (hashed as 188 MB of float32 for MNIST, see DataDigest).
func NewFingerprint(cfg Config, data *dataset.Set) Fingerprint {
	return Fingerprint{
		GEMM:    nn.BLASBackend(),
		Kernel:  nn.BLASBitsKernel(),
		Fixed:   fixedWay(),
		Threads: cfg.Threads,
		GOARCH:  runtime.GOARCH,
		Data:    DataDigest(data),
	}
}

// DataDigest is the hex SHA-256 of a training set: its sizes (N, Dim,
// Classes, Outputs), then the features, the labels and the targets, each as
// its length and its values (float32 bits or int32); every number
// little-endian, sizes and lengths as uint64. The features are hashed as
// float32 whether the set holds them as X or as Bytes, so the digest is the
// same for the same values in either form, and on every architecture.
// MNIST's 188 MB of float32 take about 0.13 s (with SHA-NI;
// BenchmarkDataDigestMNIST).
func DataDigest(s *dataset.Set) string { return dataDigest(s, nativeLittleEndian) }

// digestChunk is how many examples of a byte-backed set DataDigest converts
// to float32 at a time.
const digestChunk = 1024

// nativeLittleEndian: on little-endian hosts (all the ones we run on) the
// values are hashed as their own bytes, without a copy.
var nativeLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

func dataDigest(s *dataset.Set, native bool) string {
	h := sha256.New()
	u64 := func(vs ...int) {
		var b [8]byte
		for _, v := range vs {
			binary.LittleEndian.PutUint64(b[:], uint64(v))
			h.Write(b[:])
		}
	}
	u64(s.N, s.Dim, s.Classes, s.Outputs)
	if s.X != nil || s.Bytes == nil {
		u64(len(s.X))
		writeLE(h, s.X, native)
	} else {
		// A byte-backed set hashes as the float32 values its bytes stand
		// for, so its digest is that of the same data held as X.
		u64(len(s.Bytes))
		x := make([]float32, digestChunk*s.Dim)
		for lo := 0; lo < s.N; lo += digestChunk {
			hi := min(lo+digestChunk, s.N)
			s.Features(lo, hi, x[:(hi-lo)*s.Dim])
			writeLE(h, x[:(hi-lo)*s.Dim], native)
		}
	}
	u64(len(s.Labels))
	writeLE(h, s.Labels, native)
	u64(len(s.Targets))
	writeLE(h, s.Targets, native)
	return hex.EncodeToString(h.Sum(nil))
}

// writeLE writes v's little-endian bytes to h: v's own memory when native
// (the host is little-endian), else encoded through a buffer.
func writeLE[T float32 | int32](h hash.Hash, v []T, native bool) {
	if len(v) == 0 {
		return
	}
	if native {
		h.Write(unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v)))
		return
	}
	const chunk = 16 << 10
	u := unsafe.Slice((*uint32)(unsafe.Pointer(&v[0])), len(v)) // the values' bits
	buf := make([]byte, 0, 4*chunk)
	for lo := 0; lo < len(u); lo += chunk {
		buf = buf[:0]
		for _, x := range u[lo:min(lo+chunk, len(u))] {
			buf = binary.LittleEndian.AppendUint32(buf, x)
		}
		h.Write(buf)
	}
}

// Sum32 is a 32-bit digest of f (the first bytes of the SHA-256 of its
// JSON), which ranks exchange on the ring at a generation's start.
func (f Fingerprint) Sum32() uint32 {
	b, err := json.Marshal(f)
	if err != nil {
		panic(err) // strings and an int cannot fail
	}
	sum := sha256.Sum256(b)
	return binary.BigEndian.Uint32(sum[:4])
}

// fpWhy is the parenthesis every refusal carries.
const fpWhy = "the fingerprint of exact training: GEMM backend and kernel, fixed-point kernel, threads, GOARCH, data"

// fpPart is one component of a Fingerprint that differs: its name, both
// values, and the refusal's text.
type fpPart struct {
	name, here, run string
	refusal         string
}

// firstDiff is the first component (in field order) in which f, this
// process's fingerprint, differs from run, the run's.
func (f Fingerprint) firstDiff(run Fingerprint) (fpPart, bool) {
	switch {
	case f.GEMM != run.GEMM:
		fix := "use a build with cgo and libopenblas (the default build)"
		if run.GEMM == "go" {
			fix = "use a pure-Go build (CGO_ENABLED=0 or -tags gogemm)"
		}
		return fpPart{"GEMM backend", f.GEMM, run.GEMM,
			fmt.Sprintf("the GEMM backend %s differs from the run's %s (%s); %s", f.GEMM, run.GEMM, fpWhy, fix)}, true
	case f.kernel() != run.kernel():
		fix := "OPENBLAS_CORETYPE=" + run.kernel()
		if run.GEMM == "go" {
			fix = "RINGTRAIN_GEMM_KERNEL=" + goKernelSetting(run.kernel())
		}
		return fpPart{"GEMM kernel", f.kernel(), run.kernel(),
			fmt.Sprintf("the GEMM kernel %s differs from the run's %s (%s); run it on a CPU of the run's kind, or set %s where the CPU supports that kernel",
				f.kernel(), run.kernel(), fpWhy, fix)}, true
	case f.Fixed != run.Fixed:
		fix := "unset RINGTRAIN_FIXED_KERNEL, on a CPU with AVX-512F and DQ"
		if run.Fixed == "gemm" {
			fix = "set RINGTRAIN_FIXED_KERNEL=off"
		}
		return fpPart{"fixed-point kernel", f.Fixed, run.Fixed,
			fmt.Sprintf("the fixed-point kernel %s differs from the run's %s (%s); %s", f.Fixed, run.Fixed, fpWhy, fix)}, true
	case f.Threads != run.Threads:
		return fpPart{"threads", fmt.Sprint(f.Threads), fmt.Sprint(run.Threads),
			fmt.Sprintf("--threads %d differs from the run's %d (%s); start it with --threads %d", f.Threads, run.Threads, fpWhy, run.Threads)}, true
	case f.GOARCH != run.GOARCH:
		return fpPart{"GOARCH", f.GOARCH, run.GOARCH,
			fmt.Sprintf("GOARCH %s differs from the run's %s (%s); run a build for GOARCH=%s", f.GOARCH, run.GOARCH, fpWhy, run.GOARCH)}, true
	case f.Data != run.Data:
		return fpPart{"training data", "sha256 " + short(f.Data), "sha256 " + short(run.Data),
			fmt.Sprintf("the training data (sha256 %s) differs from the run's (sha256 %s) (%s); give it the same --data files as the other workers",
				short(f.Data), short(run.Data), fpWhy)}, true
	}
	return fpPart{}, false
}

// kernel is f.Kernel as NewFingerprint records it now: the pure-Go "avx512",
// which fingerprints taken before Kernel named a class of bits may hold, is
// "avx2-fma" (nn.BLASBitsKernel).
func (f Fingerprint) kernel() string {
	if f.GEMM == "go" && f.Kernel == "avx512" {
		return "avx2-fma"
	}
	return f.Kernel
}

// goKernelSetting is the RINGTRAIN_GEMM_KERNEL value that selects a pure-Go
// kernel class: "avx2" for avx2-fma (avx512 too computes its bits, and is
// what an AVX-512 CPU runs with the variable unset), else the name itself.
func goKernelSetting(kernel string) string {
	if kernel == "avx2-fma" {
		return "avx2"
	}
	return kernel
}

// short is a digest's first 12 hex digits, enough to tell two apart in a
// message.
func short(digest string) string {
	if len(digest) > 12 {
		return digest[:12]
	}
	return digest
}

// Diff describes, in one line, the first component in which f (this
// process's fingerprint) differs from run (the run's), with both values,
// e.g. "threads 2 here, 1 in the run"; "" when they are equal.
func (f Fingerprint) Diff(run Fingerprint) string {
	p, ok := f.firstDiff(run)
	if !ok {
		return ""
	}
	return fmt.Sprintf("%s %s here, %s in the run", p.name, p.here, p.run)
}

// Check is nil when f (this process's fingerprint) equals run (the run's),
// else a usage error in one line: what differs, both values, and the fix,
// e.g. "--threads 2 differs from the run's 1 (…); start it with --threads 1".
func (f Fingerprint) Check(run Fingerprint) error {
	p, ok := f.firstDiff(run)
	if !ok {
		return nil
	}
	return usage.New(p.refusal)
}

// fixedWay is Fingerprint.Fixed for this process.
func fixedWay() string {
	if k := nn.FixedKernel(); k != "" && !(nn.BLASBackend() == "go" && nn.BLASBitsKernel() == "avx2-fma") {
		return k
	}
	return "gemm"
}
