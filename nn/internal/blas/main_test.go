package blas

import (
	"testing"

	"go.uber.org/goleak"
)

// gonum's parallel Sgemm must have joined its workers before returning.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
