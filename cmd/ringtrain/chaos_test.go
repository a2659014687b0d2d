package main

import (
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/deploy/chaos"
)

func TestChaosUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"chaos"}, "--all"},
		{[]string{"chaos", "--scenario", "kill-everything"}, "kill-worker"},
		{[]string{"chaos", "--all", "--scenario", "kill-worker"}, "not both"},
		{[]string{"chaos", "--all", "--strike-step", "0"}, "--strike-step"},
		{[]string{"chaos", "--all", "--target-accuracy", "2"}, "--target-accuracy"},
		{[]string{"chaos", "--all", "--project", "Bad_Name"}, "--project"},
		{[]string{"chaos", "--all", "--etcd-client", "ops/x"}, "--etcd-client"},
	} {
		code, _, errs := runCLI(tc.args...)
		if code != 2 || !strings.Contains(errs, tc.want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line with %q", tc.args, code, errs, tc.want)
		}
	}
	code, out, _ := runCLI("chaos", "--list")
	if code != 0 {
		t.Fatalf("--list: exit %d", code)
	}
	for _, n := range chaos.ScenarioNames() {
		if !strings.Contains(out, n) {
			t.Errorf("--list does not list %s", n)
		}
	}
}
