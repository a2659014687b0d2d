package nn

import (
	"errors"
	"fmt"
)

// ShapeError is the panic value for operands whose sizes do not match the
// network or each other. Shape mismatches are programmer errors, so nn panics
// rather than returning them.
type ShapeError struct {
	Op   string // the method that was called, e.g. "Forward"
	Arg  string // the operand, e.g. "len(x)"
	Got  int    // its size or value
	Want int    // the size the call needs, or the bound given by Rel
	Rel  string // "" when Got must equal Want, else the relation it must satisfy: "<", ">="
}

func (e *ShapeError) Error() string {
	rel := e.Rel
	if rel != "" {
		rel += " "
	}
	return fmt.Sprintf("nn: %s: %s = %d, want %s%d", e.Op, e.Arg, e.Got, rel, e.Want)
}

// LabelError is the panic value for a class label outside [0, Classes) given to
// a cross_entropy network.
type LabelError struct {
	Op      string
	Row     int   // example index within the batch
	Label   int32 // the offending label
	Classes int   // the network's output width
}

func (e *LabelError) Error() string {
	return fmt.Sprintf("nn: %s: label %d at row %d out of range; labels must be in [0, %d)", e.Op, e.Label, e.Row, e.Classes)
}

// ConfigError reports a bad name or setting in a Spec, OptimizerConfig,
// Schedule or LMConfig. Its message names the field, the value and the fix:
//
//	nn: activation "relux" unknown; use one of identity, logistic, ...
type ConfigError struct {
	Field   string // e.g. "activation", "optimizer momentum", "schedule step_size"
	Value   string // the offending value as written (strings quoted)
	Problem string // what is wrong with it, e.g. "unknown"
	Fix     string // what to do instead
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("nn: %s %s %s; %s", e.Field, e.Value, e.Problem, e.Fix)
}

// ErrDampingLimit is returned (wrapped) by LevenbergMarquardt.Step when no
// damping up to LMConfig.MaxMu reduces the loss.
var ErrDampingLimit = errors.New("nn: Levenberg-Marquardt damping limit reached")

func configErr(field string, value any, problem, fix string) *ConfigError {
	var v string
	switch x := value.(type) {
	case string:
		v = fmt.Sprintf("%q", x)
	default:
		v = fmt.Sprint(x)
	}
	return &ConfigError{Field: field, Value: v, Problem: problem, Fix: fix}
}
