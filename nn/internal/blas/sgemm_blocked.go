package blas

import "sync"

// The blocked Sgemm around the AVX2 micro-kernel, in the manner of BLIS: op(B)
// is packed kc×nc at a time into 16-column slivers, op(A) mc×kc at a time
// into 6-row slivers (edges padded with zeros), and panelAVX2 multiplies one
// B sliver, kept in L1, by the A slivers of a block, kept in L2.
//
// Only kc changes bits: each C element is the fused multiply-add chain over
// one k-block, in order, scaled by alpha and added to C (times beta for the
// first block, else once). kc depends on k alone (blockK), so mc, nc, the
// tile a C element falls in and the thread that computes it do not change its
// value.
const (
	mr    = 6   // rows of a micro-tile
	nr    = 16  // columns of a micro-tile
	kcMax = 256 // longest k-block: a 256×16 B sliver is 16 KiB of L1
	mcMax = 144 // rows of a packed A block: 144×256 floats is 144 KiB of L2
	ncMax = 2048
)

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
func blockedSgemm(threads int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	colTiles, rowTiles := (n+nr-1)/nr, (m+mr-1)/mr
	byCols := colTiles >= rowTiles
	tiles, size := rowTiles, mr
	if byCols {
		tiles, size = colTiles, nr
	}
	parts := min(threads, tiles)
	if parts <= 1 {
		serialSgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
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
				serialSgemm(transA, transB, m, hi-lo, k, alpha, a, lda, bj, ldb, beta, c[lo:], ldc)
				return
			}
			hi = min(hi, m)
			ai := a[lo:]
			if !transA {
				ai = a[lo*lda:]
			}
			serialSgemm(transA, transB, hi-lo, n, k, alpha, ai, lda, b, ldb, beta, c[lo*ldc:], ldc)
		})
	}
	wg.Wait()
}

// serialSgemm computes the whole product on the calling goroutine.
func serialSgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	w := getWorkspace()
	defer putWorkspace(w)
	kc := blockK(k)
	for jc := 0; jc < n; jc += ncMax {
		nc := min(ncMax, n-jc)
		for pc := 0; pc < k; pc += kc {
			kb := min(kc, k-pc)
			w.b = grow(w.b, roundUp(nc, nr)*kb)
			packB(w.b, transB, b, ldb, pc, jc, kb, nc)
			// The first k-block applies beta; the others add to what it left.
			bet, load := beta, beta != 0
			if pc > 0 {
				bet, load = 1, true
			}
			for ic := 0; ic < m; ic += mcMax {
				mc := min(mcMax, m-ic)
				w.a = grow(w.a, roundUp(mc, mr)*kb)
				packA(w.a, transA, a, lda, ic, pc, mc, kb)
				macroTile(kb, mc, nc, w.a, w.b, c[ic*ldc+jc:], ldc, alpha, bet, load)
			}
		}
	}
}

// macroTile multiplies a packed mc×kb block of A by a packed kb×nc panel of
// B into C's mc×nc block at c.
func macroTile(kb, mc, nc int, pa, pb, c []float32, ldc int, alpha, beta float32, load bool) {
	full := mc / mr
	for jr := 0; jr < nc; jr += nr {
		bs := pb[jr*kb:]
		cj := c[jr:]
		if cols := nc - jr; cols < nr {
			for ir := 0; ir < mc; ir += mr {
				edgeTile(kb, min(mr, mc-ir), cols, pa[ir*kb:], bs, cj[ir*ldc:], ldc, alpha, beta, load)
			}
			continue
		}
		if full > 0 {
			panelAVX2(kb, full, &pa[0], &bs[0], &cj[0], ldc, alpha, beta, load)
		}
		if ir := full * mr; ir < mc {
			edgeTile(kb, mc-ir, nr, pa[ir*kb:], bs, cj[ir*ldc:], ldc, alpha, beta, load)
		}
	}
}

// edgeTile computes a rows×cols corner of a micro-tile through a full 6×16
// copy, with the same kernel and so the same bits as a full tile.
func edgeTile(kb, rows, cols int, pa, pb, c []float32, ldc int, alpha, beta float32, load bool) {
	var t [mr * nr]float32
	if load {
		for r := range rows {
			copy(t[r*nr:r*nr+cols], c[r*ldc:r*ldc+cols])
		}
	}
	panelAVX2(kb, 1, &pa[0], &pb[0], &t[0], nr, alpha, beta, load)
	for r := range rows {
		copy(c[r*ldc:r*ldc+cols], t[r*nr:r*nr+cols])
	}
}

func roundUp(x, to int) int { return (x + to - 1) / to * to }

// packA packs rows i0..i0+rows and columns p0..p0+kb of op(A) into 6-row
// slivers: sliver s holds column p of its rows at dst[s*6*kb+6p:], rows past
// the end as zeros.
func packA(dst []float32, trans bool, a []float32, lda, i0, p0, rows, kb int) {
	for s := 0; s < rows; s += mr {
		d := dst[s*kb : (s+mr)*kb]
		h := min(mr, rows-s)
		if trans {
			// op(A)[i, p] = a[p*lda+i]: a sliver's column is a run of a row of A.
			for p := range kb {
				src := a[(p0+p)*lda+i0+s:]
				dp := d[p*mr : p*mr+mr]
				if h == mr {
					*(*[mr]float32)(dp) = *(*[mr]float32)(src)
					continue
				}
				copy(dp, src[:h])
				clear(dp[h:])
			}
			continue
		}
		for r := range h {
			src := a[(i0+s+r)*lda+p0:][:kb]
			for p, v := range src {
				d[p*mr+r] = v
			}
		}
		for r := h; r < mr; r++ {
			for p := range kb {
				d[p*mr+r] = 0
			}
		}
	}
}

// packB packs rows p0..p0+kb and columns j0..j0+cols of op(B) into 16-column
// slivers: the sliver of columns s..s+16 holds row p at dst[s*kb+16p:],
// columns past the end as zeros.
func packB(dst []float32, trans bool, b []float32, ldb, p0, j0, kb, cols int) {
	for s := 0; s < cols; s += nr {
		d := dst[s*kb : (s+nr)*kb]
		w := min(nr, cols-s)
		if !trans {
			if w == nr {
				_ = b[(p0+kb-1)*ldb+j0+s+nr-1]
				packCopyAVX2(&d[0], &b[p0*ldb+j0+s], ldb, kb)
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
		// transposed 8×8 at a time by the kernel when there are 16 of them.
		done := 0
		if w == nr && kb >= 8 {
			done = kb &^ 7
			_ = b[(j0+s+nr-1)*ldb+p0+done-1]
			packTransAVX2(&d[0], &b[(j0+s)*ldb+p0], ldb, done)
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
