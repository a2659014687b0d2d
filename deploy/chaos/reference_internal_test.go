package chaos

import (
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/train"
)

// A merged project as docker-compose 1.29 prints it (short volume syntax).
const composeConfigV1 = `services:
  coordinator-1:
    command:
    - coordinator
    - --etcd=http://etcd:2379
    - --id=coordinator-1
    - --config=/etc/ringtrain/run.yaml
    - --seed=7
    - --threads=4
    - --checkpoint-dir=/checkpoints
    - --hash-every=50
    - --log-level=info
    image: ringtrain:dev
    volumes:
    - checkpoints:/checkpoints:rw
    - /repo/deploy/chaos/run.yaml:/etc/ringtrain/run.yaml:ro
  coordinator-2:
    command:
    - coordinator
    - --id=coordinator-2
    - --config=/etc/ringtrain/run.yaml
    - --seed=7
    - --hash-every=50
    image: ringtrain:dev
    volumes:
    - /repo/deploy/chaos/run.yaml:/etc/ringtrain/run.yaml:ro
  etcd:
    command:
    - --name=etcd
    image: ringtrain-etcd:v3.7.3
  worker:
    command:
    - worker
    - --checkpoint-dir=/checkpoints
    - --threads=1
    - --peer-timeout=5s
    image: ringtrain:dev
`

// The same as Compose v2 prints it (long volume syntax).
const composeConfigV2 = `name: x
services:
  coordinator-1:
    command:
      - coordinator
      - --config
      - /etc/ringtrain/run.yaml
      - --seed=7
      - --shuffle
      - --hash-every=50
    image: ringtrain:dev
    volumes:
      - type: volume
        source: checkpoints
        target: /checkpoints
      - type: bind
        source: /repo/deploy/chaos/run.yaml
        target: /etc/ringtrain/run.yaml
        read_only: true
  worker:
    command: worker --data mnist --threads 1
    image: ringtrain:dev
`

func TestReferenceSpecFrom(t *testing.T) {
	spec, err := referenceSpecFrom([]byte(composeConfigV1))
	if err != nil {
		t.Fatal(err)
	}
	if spec.image != "ringtrain:dev" {
		t.Errorf("image %q", spec.image)
	}
	if got, want := strings.Join(spec.mounts, " "), "/repo/deploy/chaos/run.yaml:/etc/ringtrain/run.yaml:ro"; got != want {
		t.Errorf("mounts %q, want %q", got, want)
	}
	// The coordinators' --threads and --checkpoint-dir are machine-local:
	// the workers' --threads counts.
	if got, want := strings.Join(spec.args, " "), "train --config=/etc/ringtrain/run.yaml --seed=7 --data=mnist --threads=1 --log-level=warn"; got != want {
		t.Errorf("args %q,\nwant %q", got, want)
	}

	spec2, err := referenceSpecFrom([]byte(composeConfigV2))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(spec2.mounts, " "), "/repo/deploy/chaos/run.yaml:/etc/ringtrain/run.yaml:ro"; got != want {
		t.Errorf("v2 mounts %q, want %q", got, want)
	}
	if got, want := strings.Join(spec2.args, " "), "train --config=/etc/ringtrain/run.yaml --seed=7 --shuffle=true --data=mnist --threads=1 --log-level=warn"; got != want {
		t.Errorf("v2 args %q,\nwant %q", got, want)
	}
}

func TestReferenceSpecFromRefuses(t *testing.T) {
	for name, cfg := range map[string]string{
		"coordinators disagree": strings.Replace(composeConfigV1, "- --seed=7\n    - --hash-every=50\n    image", "- --seed=8\n    - --hash-every=50\n    image", 1),
		"config not mounted":    strings.Replace(composeConfigV1, "/repo/deploy/chaos/run.yaml:/etc/ringtrain/run.yaml:ro", "/repo/x.yaml:/etc/other.yaml:ro", -1),
		"other data":            strings.Replace(composeConfigV1, "- --peer-timeout=5s", "- --data=/mnt/data", 1),
		"no coordinator":        "services:\n  worker:\n    command: [worker]\n    image: ringtrain:dev\n",
	} {
		if _, err := referenceSpecFrom([]byte(cfg)); err == nil {
			t.Errorf("%s: no error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func TestParseTrainSummary(t *testing.T) {
	out := "some line\n{\"step\":2808,\"epoch\":6,\"test_accuracy\":0.98,\"params_sha256\":\"abc\"}\n"
	sum, err := parseTrainSummary([]byte(out))
	if err != nil || sum.Step != 2808 || sum.ParamsSHA256 != "abc" {
		t.Fatalf("parseTrainSummary = %+v, %v", sum, err)
	}
	for _, bad := range []string{"", "not json\n", `{"step":1}` + "\n"} {
		if _, err := parseTrainSummary([]byte(bad)); err == nil {
			t.Errorf("parseTrainSummary(%q): no error", bad)
		}
	}
}

func TestCheckReference(t *testing.T) {
	ref := &chaosReference{sum: train.Summary{Step: 2808, ParamsSHA256: "aa"}}
	if err := checkReference(train.Summary{Step: 2808, ParamsSHA256: "aa"}, ref); err != nil {
		t.Errorf("equal: %v", err)
	}
	for _, s := range []train.Summary{
		{Step: 2808, ParamsSHA256: "ab"},
		{Step: 2808},
		{Step: 2000, ParamsSHA256: "aa"},
	} {
		if err := checkReference(s, ref); err == nil {
			t.Errorf("%+v against %+v: no error", s, ref.sum)
		}
	}
}
