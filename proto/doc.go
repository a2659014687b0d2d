// Package ringtrainpb holds ringtrain's protocol buffers and their generated
// Go code (regenerate with `make proto`, which runs scripts/genproto.sh with
// pinned tool versions; `make verify-proto` fails on any difference).
//
// collective.proto is the data plane of the ring all-reduce (used only by
// package allreduce). Generated types stop at the RPC layer.
package ringtrainpb
