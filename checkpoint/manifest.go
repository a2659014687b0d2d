package checkpoint

import (
	"encoding/json"
	"time"
)

// FormatVersion is the manifest format this package writes and reads.
const FormatVersion = 1

// File names inside a checkpoint directory.
const (
	ModelFile     = "model.safetensors"
	OptimizerFile = "optimizer.safetensors"
	ManifestFile  = "manifest.json"
)

// Cursor is the data position training resumes from: global minibatch Step
// (0-based) of Epoch. It converts to and from dataset.Cursor.
type Cursor struct {
	Epoch int `json:"epoch"`
	Step  int `json:"step"`
}

// Manifest describes a checkpoint; it is stored as manifest.json.
type Manifest struct {
	// FormatVersion is the manifest format; Save sets it to FormatVersion.
	FormatVersion int `json:"format_version"`
	// Step is the number of optimizer steps applied to the saved model.
	Step int64 `json:"step"`
	// Epoch is the epoch the next step belongs to.
	Epoch int `json:"epoch"`
	// Cursor is where the data pipeline resumes.
	Cursor Cursor `json:"cursor"`
	// Seed is the run's seed, from which shuffles are derived.
	Seed uint64 `json:"seed"`
	// Run is the model, optimizer and training spec, a JSON object. Save
	// writes {} when it is empty.
	Run json.RawMessage `json:"run"`
	// ParamsSHA256 is the hex SHA-256 of the parameter tensors' little-endian
	// float32 bytes in layer order (layers.0.weight, layers.0.bias,
	// layers.1.weight, ...): equal hashes, equal models.
	ParamsSHA256 string `json:"params_sha256,omitempty"`
	// Metrics is an optional history (losses, accuracies) for plots.
	Metrics json.RawMessage `json:"metrics,omitempty"`
	// Created is when the checkpoint was taken; Save fills it with the
	// current UTC time, to the second, when it is zero.
	Created time.Time `json:"created"`
	// Files maps each tensor file name to the hex SHA-256 of its bytes;
	// Save fills it.
	Files map[string]string `json:"files"`
}
