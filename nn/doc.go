// Package nn is a fully connected neural network with backpropagation,
// first-order optimizers, learning-rate schedules and Levenberg–Marquardt,
// in float32 on the CPU.
//
// It is a pure library: no network, no logging, no clock, no goroutines of its
// own (see Threads below), and deterministic given an explicit *rand.Rand, the
// BLAS backend and the thread count.
//
// # Layout
//
// A Network built from Spec{Layers: [L0 L1 ... Lk]} has k dense layers. All
// parameters live in one contiguous []float32, Network.Params: for each layer
// i from the input, its weight matrix W[out, in] row-major (the layout of
// PyTorch's nn.Linear.weight), then its bias b[out]. Network.Grads has the
// same layout and length. Weight, Bias, WeightGrad and BiasGrad return views
// into these buffers, not copies. A flat buffer can therefore be all-reduced,
// checkpointed or handed to an Optimizer as a whole.
//
// # Math
//
// Examples are rows. With A^0 = X [N, L0], each layer computes
//
//	Z^l = A^{l-1} (W^l)ᵀ + 1 (b^l)ᵀ,   A^l = f(Z^l)
//
// as one GEMM. ComputeGradients then runs the matrix form of backpropagation:
// Δ^L = scale·∂loss/∂Z^L from the loss and the output activation, and from the
// output back
//
//	∂W^l = (Δ^l)ᵀ A^{l-1},  ∂b^l = Σ_rows Δ^l,  Δ^{l-1} = (Δ^l W^l) ∘ f'(Z^{l-1})
//
// — the per-example δ^{l-1} = (W^l)ᵀ δ^l ∘ f'(z^{l-1}) with the batch stacked
// as rows, and the batch sum done inside the GEMM. For a softmax hidden layer
// "∘ f'" is the Jacobian-vector product a ∘ (g - (g·a)).
//
// Losses follow PyTorch's definitions per example (cross_entropy as
// nn.CrossEntropyLoss, bce as nn.BCEWithLogitsLoss, mse as nn.MSELoss, the last
// two averaging over the outputs); ComputeGradients returns their sum over the
// batch and scales the gradient by the caller's factor, so that 1/N gives the
// mean and 1/B on each shard of a global batch B makes the workers' gradients
// sum to the global mean.
//
// # Ownership and aliasing
//
//   - Params and Grads belong to the Network but are exported to be read and
//     written between calls: an Optimizer updates Params in place, an
//     all-reduce may overwrite Grads in place. Do not reslice them to another
//     length.
//   - ComputeGradients overwrites every element of Grads and never reads it; it
//     neither accumulates nor depends on earlier contents (NaNs included).
//     Forward and Evaluate do not touch Grads.
//   - Batch slices and the x given to Forward are only read, and only during
//     the call; several networks may share one Batch. They must not alias
//     Params or Grads.
//   - The slice Forward returns belongs to the network and is overwritten by its
//     next Forward, ComputeGradients, Evaluate or LevenbergMarquardt.Step.
//   - Each Network owns scratch space, grown to the largest batch seen and then
//     reused, so steady-state training does not allocate. A Network is not
//     safe for concurrent use; Clone gives an independent copy sharing nothing.
//   - Optimizer.Step(params, grads, lr) reads grads and writes params in place;
//     the two must not overlap. State returns copies, so a checkpoint taken
//     between steps is not changed by later steps; SetState copies its input.
//   - LevenbergMarquardt writes the Params of the network it was given.
//
// # Errors
//
// Shape mismatches (a batch of the wrong length, a layer index out of range)
// are programmer errors: nn panics with a *ShapeError, or with a *LabelError
// for a class label outside [0, classes). Bad names and settings in Spec,
// OptimizerConfig, Schedule and LMConfig are returned as *ConfigError, whose
// message names the field, the value and the fix.
//
// # Threads
//
// Matrix products go to internal/blas: OpenBLAS's cblas_sgemm when cgo is
// enabled; when built with CGO_ENABLED=0 or -tags gogemm, pure Go: an
// AVX-512 assembly kernel on amd64 CPUs with AVX512F (about as fast as
// OpenBLAS's SkylakeX kernel on a training step), else an AVX2+FMA one where
// the CPU has those (the same bits, about half as fast), else gonum's Sgemm,
// and RINGTRAIN_GEMM_KERNEL=avx512, =avx2 or =generic picks one. Only GEMMs
// cross into C; elementwise work stays in Go. SetThreads is
// process-wide because the thread count belongs to the BLAS library. OpenBLAS
// starts its own worker threads (not goroutines) at load time and defaults to
// OPENBLAS_NUM_THREADS or every core; the pure-Go build defaults to one
// thread and then never starts a goroutine. Results are bitwise reproducible
// for a fixed backend, kernel class (BLASBitsKernel: avx512 and avx2-fma are
// one) and thread count.
package nn
