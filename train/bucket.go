package train

import "context"

// DefaultBucketMiB is the default gradient bucket size of the overlap of a
// step's all-reduce with its backward pass: 0, one all-reduce after
// backward. Measured on 2 cores (bench train, 784-512-512-10, batch 256, 3
// alternating rounds), 1 MiB buckets gave 0.92× the samples/s of one
// all-reduce with 2 workers and 0.98× with 4 (float32), 1.03× with 2
// (exact): with every core busy computing there is no idle core to hide
// communication behind, and the extra collectives cost. Where workers have
// cores to spare, --bucket-mib 1 lets the ring work during backward.
const DefaultBucketMiB = 0

// A bucket is a run of consecutive layers whose gradients one collective
// reduces: it is complete when backward has finished layer low (backward
// goes from the output layer down), and it covers elements [off, end) of the
// gradient (weights then bias of each layer, in layer order).
type bucket struct {
	low, off, end int
}

// planBuckets groups the layers of a network of the given layer sizes, from
// the output back, into buckets of at least capElems elements each; the last
// bucket (ending with layer 0) takes what remains. capElems <= 0: one bucket.
// Every rank plans the same buckets from the run's spec, so every rank
// starts the same collectives in the same order.
func planBuckets(layers []int, capElems int) []bucket {
	nl := len(layers) - 1
	offs := make([]int, nl+1)
	for l := range nl {
		offs[l+1] = offs[l] + layers[l]*layers[l+1] + layers[l+1]
	}
	var bs []bucket
	end := offs[nl]
	for l := nl - 1; l >= 0; l-- {
		if l == 0 || (capElems > 0 && end-offs[l] >= capElems) {
			bs = append(bs, bucket{low: l, off: offs[l], end: end})
			end = offs[l]
		}
	}
	return bs
}

// bucketElems is how many elements of elemBytes bytes fill mib MiB (0: no cap).
func bucketElems(mib float64, elemBytes int) int {
	return int(mib * (1 << 20) / float64(elemBytes))
}

// waitAll waits for every collective (each must be waited) and returns the
// first error.
func waitAll(ps []Pending) error {
	var first error
	for _, p := range ps {
		if err := p.Wait(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// startBuckets is the float32 step's hook into backward: as layer l's
// gradients become final it starts the all-reduce of every bucket that l
// completes, except the last one, which the step starts itself with the
// control values in front.
type startBuckets struct {
	ctx     context.Context
	red     Reducer
	grads   []float32
	buckets []bucket
	next    int
	pending []Pending
}

func (sb *startBuckets) ready(l int) {
	if sb.next < len(sb.buckets)-1 && l == sb.buckets[sb.next].low {
		b := sb.buckets[sb.next]
		sb.pending = append(sb.pending, sb.red.Start(sb.ctx, sb.grads[b.off:b.end]))
		sb.next++
	}
}
