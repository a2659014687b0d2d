package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = mainErr(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpListsEveryCommand(t *testing.T) {
	code, out, _ := runCLI("--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for name := range commands {
		if !strings.Contains(out, name) {
			t.Errorf("--help does not list %q", name)
		}
		if name == "bench" {
			continue
		}
		if code, _, errs := runCLI(name, "--help"); code != 0 || !strings.Contains(errs, "Usage") {
			t.Errorf("%s --help: exit %d, output %q", name, code, errs)
		}
	}
}

func TestUsageErrorsExit2WithOneClearLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"nosuch"}, []string{"nosuch", "--help"}},
		{[]string{"train", "--batch", "0"}, []string{"--batch", "0", "positive"}},
		{[]string{"train", "--lr", "-0.1"}, []string{"--lr", "-0.1"}},
		{[]string{"train", "--activation", "relux"}, []string{"relux", "relu"}},
		{[]string{"train", "--loss", "hinge"}, []string{"hinge", "cross_entropy"}},
		{[]string{"train", "--optimizer", "rmsprop"}, []string{"rmsprop", "adam"}},
		{[]string{"train", "--layers", "784-0-10"}, []string{"--layers", "784-0-10"}},
		{[]string{"train", "--bogus"}, []string{"bogus"}},
		{[]string{"train", "--data", "csv:nope"}, []string{"--data"}},
		{[]string{"local", "--workers", "0"}, []string{"--workers", "0"}},
		{[]string{"worker"}, []string{"--etcd"}},
		{[]string{"eval"}, []string{"--checkpoint"}},
		{[]string{"bench", "train", "--workers", "3", "--global-batch", "256"}, []string{"--global-batch", "256", "--workers", "3"}},
		{[]string{"bench", "wire", "--workers", "1"}, []string{"--workers", "1", "at least 2"}},
		{[]string{"bench", "recovery", "--workers", "1"}, []string{"--workers 1", "--workers 3"}},
		{[]string{"bench", "recovery", "--rounds", "0"}, []string{"--rounds 0"}},
		{[]string{"bench", "allreduce", "--sizes-mib", "4,x"}, []string{"--sizes-mib", "x"}},
	} {
		code, _, errs := runCLI(tc.args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", tc.args, code, errs)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(errs, w) {
				t.Errorf("%v: error %q does not mention %q", tc.args, errs, w)
			}
		}
	}
}

func TestLayersThatDoNotFitTheData(t *testing.T) {
	code, _, errs := runCLI("train", "--layers", "100-10", "--steps", "1")
	if code != 2 || !strings.Contains(errs, "784") || !strings.Contains(errs, "--layers") {
		t.Fatalf("exit %d, %q: want exit 2 naming --layers and the data's 784 features", code, errs)
	}
}

func TestCorruptCheckpointIsAnError(t *testing.T) {
	dir := t.TempDir()
	if code, _, errs := runCLI("train", "--layers", "784-16-10", "--steps", "5", "--checkpoint-dir", dir); code != 0 {
		t.Fatalf("train: exit %d: %s", code, errs)
	}
	ck := filepath.Join(dir, "step-00000005")
	if code, out, _ := runCLI("eval", "--checkpoint", ck); code != 0 || !strings.Contains(out, "test_accuracy") {
		t.Fatalf("eval of a good checkpoint: exit %d %q", code, out)
	}
	path := filepath.Join(ck, "model.safetensors")
	b, _ := os.ReadFile(path)
	b[100] ^= 1
	os.WriteFile(path, b, 0o644)
	code, _, errs := runCLI("eval", "--checkpoint", ck)
	if code != 1 || !strings.Contains(errs, "model.safetensors") || !strings.Contains(errs, "corrupt") {
		t.Fatalf("eval of a corrupt checkpoint: exit %d, %q", code, errs)
	}
}

// The documented defaults reach 98% on MNIST within 10 epochs.
func TestTrainDefaultsReach98(t *testing.T) {
	if testing.Short() {
		t.Skip("ten epochs of MNIST")
	}
	code, out, errs := runCLI("train", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var sum struct {
		Step         int64   `json:"step"`
		Epoch        int     `json:"epoch"`
		TrainLoss    float64 `json:"train_loss"`
		TestLoss     float64 `json:"test_loss"`
		TestAccuracy float64 `json:"test_accuracy"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("summary %q: %v", out, err)
	}
	t.Logf("defaults: %s", strings.TrimSpace(out))
	if sum.Epoch != 9 || sum.TestAccuracy < 0.98 {
		t.Fatalf("after %d epochs test accuracy %.4f, want 10 epochs and ≥ 0.98", sum.Epoch+1, sum.TestAccuracy)
	}
}
