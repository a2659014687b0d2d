package testenv

import "testing"

// fakeT records what Need does to a test.
type fakeT struct {
	testing.TB
	skipped, failed bool
}

func (f *fakeT) Helper()               {}
func (f *fakeT) Skip(...any)           { f.skipped = true }
func (f *fakeT) Fatalf(string, ...any) { f.failed = true }

func TestNeed(t *testing.T) {
	for _, c := range []struct {
		have                  bool
		ci                    string
		wantSkipped, wantFail bool
	}{
		{true, "", false, false},
		{true, "true", false, false},
		{false, "", true, false},
		{false, "true", false, true},
	} {
		t.Setenv("CI", c.ci)
		f := &fakeT{}
		Need(f, c.have, "an AVX-512 kernel")
		if f.skipped != c.wantSkipped || f.failed != c.wantFail {
			t.Errorf("have=%v CI=%q: skipped %v failed %v, want %v %v", c.have, c.ci, f.skipped, f.failed, c.wantSkipped, c.wantFail)
		}
	}
}
