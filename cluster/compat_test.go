package cluster

import (
	"testing"
	"time"
)

// Keys written by the previous release still load: its run spec carried this
// machine's data and checkpoint paths and thread count (now each worker's own
// flags: ignored), and its checkpoint pointer held the writer's absolute path
// (resolved under the reader's root).
func TestOlderReleaseKeysLoad(t *testing.T) {
	e := startEtcd(t)
	c := newTestClient(t, e, "old")
	ctx := testCtx(t, 10*time.Second)
	old := `{"config":{"layers":"784-64-10","activation":"relu","loss":"cross_entropy","weight_init":"he",` +
		`"optimizer":"momentum","lr":0.05,"momentum":0.9,"schedule":"cosine","gamma":0.1,"batch":64,"epochs":2,` +
		`"seed":3,"shuffle":true,"data":"/old/mnist","checkpoint_dir":"/old/ckpt","checkpoint_every":500,` +
		`"checkpoint_keep":3,"threads":4},"min_workers":2,"max_workers":0,"hash_every":100}`
	if _, err := c.Etcd().Put(ctx, c.Key(KeySpec), old); err != nil {
		t.Fatal(err)
	}
	spec, err := c.Spec(ctx)
	if err != nil {
		t.Fatalf("an older release's spec: %v", err)
	}
	if spec.Config.Layers != "784-64-10" || spec.Config.Batch != 64 || spec.Config.Seed != 3 || spec.MinWorkers != 2 || spec.Config.Exact {
		t.Fatalf("older spec decoded as %+v", spec)
	}
	if _, err := c.Etcd().Put(ctx, c.Key(KeyCheckpoint), `{"step":500,"dir":"/old/ckpt/step-00000500","gen":3,"time":"2026-11-27T02:13:00Z"}`); err != nil {
		t.Fatal(err)
	}
	ref, ok, err := c.LatestCheckpoint(ctx)
	if err != nil || !ok || ref.Path("/mnt/ckpt") != "/mnt/ckpt/step-00000500" {
		t.Fatalf("older pointer: %+v %v %v, want /mnt/ckpt/step-00000500", ref, ok, err)
	}
}
