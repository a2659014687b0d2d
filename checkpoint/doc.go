// Package checkpoint defines ringtrain's on-disk checkpoint format and
// reads and writes it durably.
//
// A checkpoint is one directory per optimizer step, ROOT/step-00000123/,
// holding three files:
//
//	model.safetensors      the parameters: layers.<i>.weight [out, in] and
//	                       layers.<i>.bias [out], F32, i from 0 at the input
//	optimizer.safetensors  optimizer state buffers, any names, F32
//	manifest.json          step, epoch, data cursor, seed, the run spec, an
//	                       optional metrics history, the creation time and
//	                       the SHA-256 of each file above ([Manifest])
//
// The tensor files follow the safetensors format exactly, so Python's
// safetensors and torch read them: an 8-byte little-endian header length N,
// N bytes of JSON header padded with spaces to a multiple of 8, then the
// little-endian tensor data in sorted name order with no gaps.
//
// Durability: [Save] writes into ROOT/.tmp-step-*, fsyncs every file and
// the directory, renames it to its final name and fsyncs ROOT. A crash
// leaves either the old state or the new one plus, at worst, a .tmp-*
// directory that [List] ignores and [Prune] removes once it has gone
// unmodified for [StaleTempAge]. [Load] verifies every hash, so a torn or
// bit-flipped file is reported as [ErrCorrupt] and [LatestValid] falls
// back to the previous checkpoint.
//
// Concurrency: functions are safe to call from several goroutines on
// different roots. On one root, Save calls must not race each other for
// the same step. Prune may run while Saves, in this process or another,
// write to the same root: it removes a .tmp-* directory only when it is
// stale, so a Save loses its temporary directory (and fails) only if it
// stalls for longer than StaleTempAge.
package checkpoint
