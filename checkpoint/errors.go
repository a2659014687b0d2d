package checkpoint

import "errors"

var (
	// ErrCorrupt reports a checkpoint file whose bytes are not what was
	// written: a hash mismatch, a truncated or malformed safetensors file,
	// an unreadable manifest.
	ErrCorrupt = errors.New("checkpoint: corrupt")

	// ErrUnsupported reports a well-formed file this version cannot use: a
	// tensor dtype other than F32, a newer manifest format_version.
	ErrUnsupported = errors.New("checkpoint: unsupported")

	// ErrNoCheckpoint reports that a root holds no checkpoint that loads.
	ErrNoCheckpoint = errors.New("checkpoint: no valid checkpoint")

	// ErrMismatch reports tensors that do not fit the model they are loaded
	// into: a missing, unexpected or differently shaped tensor.
	ErrMismatch = errors.New("checkpoint: tensors do not match the model")

	// ErrInvalid reports bad arguments: a tensor whose data does not match
	// its shape, duplicate names, a negative step.
	ErrInvalid = errors.New("checkpoint: invalid argument")
)
