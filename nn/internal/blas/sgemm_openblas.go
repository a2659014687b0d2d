//go:build cgo && !gogemm

package blas

/*
#cgo LDFLAGS: -lopenblas
#include <stdlib.h>
#include <cblas.h>

// Only a DYNAMIC_ARCH OpenBLAS has these (driver/others/dynamic.c). Weak, so
// that any other OpenBLAS links too and leaves them NULL.
extern void gotoblas_dynamic_init(void) __attribute__((weak));
extern void gotoblas_dynamic_quit(void) __attribute__((weak));

static int ringtrain_dynamic_arch(void) {
	return gotoblas_dynamic_init != NULL && gotoblas_dynamic_quit != NULL;
}

// ringtrain_force_core selects core's kernel table as OPENBLAS_CORETYPE=core
// would have when the library loaded. gotoblas_dynamic_init returns at once
// while a table is selected, so gotoblas_dynamic_quit (which only clears the
// pointer) goes first; init then reads the variable, selects the table and
// calls its init (block sizes). The variable is unset again, so that neither
// this process nor its children see a setting the user did not make.
static void ringtrain_force_core(const char *core) {
	setenv("OPENBLAS_CORETYPE", core, 1);
	gotoblas_dynamic_quit();
	gotoblas_dynamic_init();
	unsetenv("OPENBLAS_CORETYPE");
}
*/
import "C"

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/cpu"
)

const backend = "openblas"

// kernel is OpenBLAS's core name, fixed when the package initialises.
var kernel = sync.OnceValue(func() string { return C.GoString(C.openblas_get_corename()) })

// replacedCore is the core a DYNAMIC_ARCH OpenBLAS chose for itself when init
// replaced it with a faster one, else "".
var replacedCore string

// init gives OpenBLAS the fastest kernel this CPU runs when the library chose
// an older one by itself, before any BLAS call. OpenBLAS 0.3.21 (Debian 12)
// does not know Sapphire and Emerald Rapids (family 6, model 0xCF): its
// get_coretype falls through from family 6 to family 15's case and returns
// Prescott, an SSE3 kernel about 4× slower than SkylakeX on a training step.
// A user's OPENBLAS_CORETYPE, even empty, is left alone, and an OpenBLAS
// built for one target (no gotoblas_dynamic_init) keeps its kernel.
func init() {
	if _, set := os.LookupEnv("OPENBLAS_CORETYPE"); set || !dynamicArch() {
		return
	}
	avx2 := cpu.X86.HasAVX2 && cpu.X86.HasFMA
	avx512 := avx2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL
	own := C.GoString(C.openblas_get_corename())
	core := coreToForce(own, avx512, avx2)
	if core == "" {
		return
	}
	cs := C.CString(core)
	defer C.free(unsafe.Pointer(cs))
	C.ringtrain_force_core(cs)
	replacedCore = own
}

// dynamicArch reports whether OpenBLAS was built with DYNAMIC_ARCH, which
// chooses its kernel when it loads.
func dynamicArch() bool { return C.ringtrain_dynamic_arch() != 0 }

// coreToForce is the OPENBLAS_CORETYPE that gives a CPU with avx512
// (AVX-512F, DQ, BW and VL) or avx2 (AVX2 and FMA) a kernel for its vector
// width in place of own, OpenBLAS's choice: "SkylakeX" or "Haswell"; "" when
// own already is an AVX2 or AVX-512 kernel (OpenBLAS may prefer Haswell's on
// some AVX-512 CPUs) or the CPU has neither.
func coreToForce(own string, avx512, avx2 bool) string {
	if wideCores[strings.ToLower(own)] {
		return ""
	}
	switch {
	case avx512:
		return "SkylakeX"
	case avx2:
		return "Haswell"
	}
	return ""
}

// wideCores are OpenBLAS's x86-64 kernels for AVX2+FMA and AVX-512, by
// core name in lower case.
var wideCores = map[string]bool{"haswell": true, "zen": true, "skylakex": true, "cooperlake": true, "sapphirerapids": true}

// kernelEnvError: KernelEnv chooses among the pure-Go kernels, which this
// build does not run.
func kernelEnvError() error {
	if v := os.Getenv(KernelEnv); v != "" {
		return fmt.Errorf("blas: %s=%q has no effect: this build multiplies with OpenBLAS (its kernel is chosen with OPENBLAS_CORETYPE); build with CGO_ENABLED=0 or -tags gogemm for the pure-Go kernels", KernelEnv, v)
	}
	return nil
}

func sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ta, tb := C.enum_CBLAS_TRANSPOSE(C.CblasNoTrans), C.enum_CBLAS_TRANSPOSE(C.CblasNoTrans)
	if transA {
		ta = C.CblasTrans
	}
	if transB {
		tb = C.CblasTrans
	}
	C.cblas_sgemm(C.CblasRowMajor, ta, tb, C.blasint(m), C.blasint(n), C.blasint(k),
		C.float(alpha), (*C.float)(&a[0]), C.blasint(lda),
		(*C.float)(&b[0]), C.blasint(ldb),
		C.float(beta), (*C.float)(&c[0]), C.blasint(ldc))
}

func setThreads(n int) { C.openblas_set_num_threads(C.int(n)) }

func threads() int { return int(C.openblas_get_num_threads()) }
