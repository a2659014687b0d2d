package blas

import "sync"

// The blocked Sgemm around the assembly micro-kernels, in the manner of BLIS:
// op(B) is packed kc×nc at a time into slivers nr columns wide, op(A) mc×kc
// at a time into slivers of mr rows (edges padded with zeros), and the
// micro-kernel multiplies one B sliver, kept in L1, by the A slivers of a
// block, kept in L2. The AVX2 kernel's tiles are 6×16 (panelAVX2), the
// AVX-512 kernel's 8×32 (panelAVX512).
//
// Only kc changes bits: each C element is the fused multiply-add chain over
// one k-block, in order, scaled by alpha and added to C (times beta for the
// first block, else once). kc depends on k alone (blockK), so mc, nc, the
// tile a C element falls in, the rows and columns computed with it and the
// thread that computes it do not change its value. Both micro-kernels take
// the same roundings, so they agree bit for bit.
const (
	kcMax = 256 // longest k-block: a 256×32 B sliver is 32 KiB of L1
	mcMax = 144 // rows of a packed A block: 144×256 floats is 144 KiB of L2
	ncMax = 2048

	maxTile = 8 * 32 // floats in the largest micro-tile
)

// tile is the micro-tile of a blocked kernel: mr rows by nr columns.
func (k goKernel) tile() (mr, nr int) {
	if k == kernelAVX512 {
		return 8, 32
	}
	return 6, 16
}

// panel computes tiles micro-tiles of C down one column of tiles with k's
// micro-kernel; see panelAVX2.
func (k goKernel) panel(kb, tiles int, a, b, c *float32, ldc int, alpha, beta float32, load bool) {
	if k == kernelAVX512 {
		panelAVX512(kb, tiles, a, b, c, ldc, alpha, beta, load)
		return
	}
	panelAVX2(kb, tiles, a, b, c, ldc, alpha, beta, load)
}

// blockK is the k-block length for a product of inner dimension k: k split
// into equal blocks of at most kcMax, so that no short last block wastes a
// pass over C.
func blockK(k int) int {
	blocks := (k + kcMax - 1) / kcMax
	return (k + blocks - 1) / blocks
}

// workspace holds one goroutine's packed blocks.
type workspace struct {
	a, b []float32
}

// workspaces keeps the workspaces of finished calls for the next ones: a
// training step then allocates nothing. (A sync.Pool would drop them at every
// garbage collection and miss whenever a goroutine changes Ps.)
var workspaces struct {
	sync.Mutex
	free []*workspace
}

func getWorkspace() *workspace {
	workspaces.Lock()
	defer workspaces.Unlock()
	if n := len(workspaces.free); n > 0 {
		w := workspaces.free[n-1]
		workspaces.free = workspaces.free[:n-1]
		return w
	}
	return new(workspace)
}

func putWorkspace(w *workspace) {
	workspaces.Lock()
	workspaces.free = append(workspaces.free, w)
	workspaces.Unlock()
}

// grow returns s resized to n, reallocating only when it is too short.
func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// blockedSgemm is the pure-Go backend's fast path: with one thread it runs on
// the calling goroutine; with more it splits C into as many stripes of whole
// micro-tiles, computes them on as many goroutines and waits for them. Shapes
// have been checked; m, n, k ≥ 1 and alpha ≠ 0.
func blockedSgemm(kern goKernel, threads int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	mr, nr := kern.tile()
	colTiles, rowTiles := (n+nr-1)/nr, (m+mr-1)/mr
	byCols := colTiles >= rowTiles
	tiles, size := rowTiles, mr
	if byCols {
		tiles, size = colTiles, nr
	}
	parts := min(threads, tiles)
	if parts <= 1 {
		serialSgemm(kern, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	var wg sync.WaitGroup
	for part := range parts {
		lo, hi := tiles*part/parts*size, tiles*(part+1)/parts*size
		wg.Go(func() {
			if byCols {
				hi = min(hi, n)
				bj := b[lo:]
				if transB {
					bj = b[lo*ldb:]
				}
				serialSgemm(kern, transA, transB, m, hi-lo, k, alpha, a, lda, bj, ldb, beta, c[lo:], ldc)
				return
			}
			hi = min(hi, m)
			ai := a[lo:]
			if !transA {
				ai = a[lo*lda:]
			}
			serialSgemm(kern, transA, transB, hi-lo, n, k, alpha, ai, lda, b, ldb, beta, c[lo*ldc:], ldc)
		})
	}
	wg.Wait()
}

// serialSgemm computes the whole product on the calling goroutine.
func serialSgemm(kern goKernel, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	w := getWorkspace()
	defer putWorkspace(w)
	mr, nr := kern.tile()
	kc := blockK(k)
	for jc := 0; jc < n; jc += ncMax {
		nc := min(ncMax, n-jc)
		for pc := 0; pc < k; pc += kc {
			kb := min(kc, k-pc)
			w.b = grow(w.b, roundUp(nc, nr)*kb)
			packB(w.b, nr, transB, b, ldb, pc, jc, kb, nc)
			// The first k-block applies beta; the others add to what it left.
			bet, load := beta, beta != 0
			if pc > 0 {
				bet, load = 1, true
			}
			for ic := 0; ic < m; ic += mcMax {
				mc := min(mcMax, m-ic)
				w.a = grow(w.a, roundUp(mc, mr)*kb)
				packA(w.a, mr, transA, a, lda, ic, pc, mc, kb)
				macroTile(kern, kb, mc, nc, w.a, w.b, c[ic*ldc+jc:], ldc, alpha, bet, load)
			}
		}
	}
}

// macroTile multiplies a packed mc×kb block of A by a packed kb×nc panel of
// B into C's mc×nc block at c.
func macroTile(kern goKernel, kb, mc, nc int, pa, pb, c []float32, ldc int, alpha, beta float32, load bool) {
	mr, nr := kern.tile()
	full := mc / mr
	for jr := 0; jr < nc; jr += nr {
		bs := pb[jr*kb:]
		cj := c[jr:]
		if cols := nc - jr; cols < nr {
			for ir := 0; ir < mc; ir += mr {
				edgeTile(kern, kb, min(mr, mc-ir), cols, pa[ir*kb:], bs, cj[ir*ldc:], ldc, alpha, beta, load)
			}
			continue
		}
		if full > 0 {
			kern.panel(kb, full, &pa[0], &bs[0], &cj[0], ldc, alpha, beta, load)
		}
		if ir := full * mr; ir < mc {
			edgeTile(kern, kb, mc-ir, nr, pa[ir*kb:], bs, cj[ir*ldc:], ldc, alpha, beta, load)
		}
	}
}

// edgeTile computes a rows×cols corner of a micro-tile through a full
// micro-tile's copy, with the same kernel and so the same bits as a full tile.
func edgeTile(kern goKernel, kb, rows, cols int, pa, pb, c []float32, ldc int, alpha, beta float32, load bool) {
	_, nr := kern.tile()
	var t [maxTile]float32
	if load {
		for r := range rows {
			copy(t[r*nr:r*nr+cols], c[r*ldc:r*ldc+cols])
		}
	}
	kern.panel(kb, 1, &pa[0], &pb[0], &t[0], nr, alpha, beta, load)
	for r := range rows {
		copy(c[r*ldc:r*ldc+cols], t[r*nr:r*nr+cols])
	}
}

func roundUp(x, to int) int { return (x + to - 1) / to * to }

// packA packs rows i0..i0+rows and columns p0..p0+kb of op(A) into slivers
// of mr rows: sliver s holds column p of its rows at dst[s*mr*kb+mr*p:], rows
// past the end as zeros.
func packA(dst []float32, mr int, trans bool, a []float32, lda, i0, p0, rows, kb int) {
	for s := 0; s < rows; s += mr {
		d := dst[s*kb : (s+mr)*kb]
		h := min(mr, rows-s)
		if trans {
			// op(A)[i, p] = a[p*lda+i]: a sliver's column is a run of a row of A.
			for p := range kb {
				src := a[(p0+p)*lda+i0+s:]
				dp := d[p*mr : p*mr+mr]
				switch {
				case h == 6 && mr == 6:
					*(*[6]float32)(dp) = *(*[6]float32)(src)
					continue
				case h == 8 && mr == 8:
					*(*[8]float32)(dp) = *(*[8]float32)(src)
					continue
				}
				copy(dp, src[:h])
				clear(dp[h:])
			}
			continue
		}
		// op(A)[i, p] = a[i*lda+p]: a sliver's row is a run of a row of A,
		// transposed in assembly for the AVX-512 kernel's full slivers.
		done := 0
		if h == 8 && mr == 8 && kb >= 8 {
			done = kb &^ 7
			_ = a[(i0+s+mr-1)*lda+p0+done-1]
			packRows8(&d[0], &a[(i0+s)*lda+p0], lda, done)
		}
		for r := range h {
			src := a[(i0+s+r)*lda+p0:][done:kb]
			for p, v := range src {
				d[(done+p)*mr+r] = v
			}
		}
		for r := h; r < mr; r++ {
			for p := range kb {
				d[p*mr+r] = 0
			}
		}
	}
}

// packB packs rows p0..p0+kb and columns j0..j0+cols of op(B) into slivers
// nr = 16 or 32 columns wide: the sliver of columns s..s+nr holds row p at
// dst[s*kb+nr*p:], columns past the end as zeros.
func packB(dst []float32, nr int, trans bool, b []float32, ldb, p0, j0, kb, cols int) {
	for s := 0; s < cols; s += nr {
		d := dst[s*kb : (s+nr)*kb]
		w := min(nr, cols-s)
		if !trans {
			if w == nr {
				_ = b[(p0+kb-1)*ldb+j0+s+nr-1]
				if nr == 32 {
					packCopy32(&d[0], &b[p0*ldb+j0+s], ldb, kb)
				} else {
					packCopy16(&d[0], &b[p0*ldb+j0+s], ldb, kb)
				}
				continue
			}
			for p := range kb {
				dp := d[p*nr : p*nr+nr]
				copy(dp, b[(p0+p)*ldb+j0+s:][:w])
				clear(dp[w:])
			}
			continue
		}
		// op(B)[p, j] = b[j*ldb+p]: a sliver's column is a run of a row of B,
		// transposed 8×8 at a time in assembly when there are nr of them.
		done := 0
		if w == nr && kb >= 8 {
			done = kb &^ 7
			_ = b[(j0+s+nr-1)*ldb+p0+done-1]
			if nr == 32 {
				packTrans32(&d[0], &b[(j0+s)*ldb+p0], ldb, done)
			} else {
				packTrans16(&d[0], &b[(j0+s)*ldb+p0], ldb, done)
			}
		}
		for col := range w {
			src := b[(j0+s+col)*ldb+p0:][done:kb]
			for p, v := range src {
				d[(done+p)*nr+col] = v
			}
		}
		for col := w; col < nr; col++ {
			for p := range kb {
				d[p*nr+col] = 0
			}
		}
	}
}
