package nn

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// TestOptimizerReferenceValues runs three steps from p = (1, -2) with
// gradients (0.5, 0.25), (-0.1, 0.4), (0.3, -0.2) and lr 0.1. The expected
// parameters were worked out in float64 from PyTorch's update rules
// (torch.optim.SGD with dampening 0, Adam, AdamW), e.g. for momentum 0.9:
// v1 = g1 = (0.5, 0.25), p1 = (0.95, -2.025); v2 = 0.9v1 + g2 = (0.35, 0.625),
// p2 = (0.915, -2.0875); v3 = (0.615, 0.3625), p3 = (0.8535, -2.12375).
func TestOptimizerReferenceValues(t *testing.T) {
	grads := [][]float32{{0.5, 0.25}, {-0.1, 0.4}, {0.3, -0.2}}
	for _, c := range []struct {
		cfg  OptimizerConfig
		want [3][2]float64
	}{
		{OptimizerConfig{Name: "sgd"}, [3][2]float64{{0.95, -2.025}, {0.96, -2.065}, {0.93, -2.045}}},
		{OptimizerConfig{Name: "sgd", WeightDecay: 0.01}, [3][2]float64{{0.949, -2.023}, {0.958051, -2.060977}, {0.927092949, -2.038916023}}},
		{OptimizerConfig{Name: "momentum", Momentum: 0.9}, [3][2]float64{{0.95, -2.025}, {0.915, -2.0875}, {0.8535, -2.12375}}},
		{OptimizerConfig{Name: "momentum", Momentum: 0.9, WeightDecay: 0.01}, [3][2]float64{{0.949, -2.023}, {0.912151, -2.081677}, {0.848074749, -2.112404623}}},
		{OptimizerConfig{Name: "nesterov", Momentum: 0.9}, [3][2]float64{{0.905, -2.0475}, {0.8835, -2.14375}, {0.79815, -2.156375}}},
		{OptimizerConfig{Name: "nesterov", Momentum: 0.9, WeightDecay: 0.01}, [3][2]float64{{0.9031, -2.0437}, {0.87907411, -2.13444697}, {0.790593358191, -2.139903123757}}},
		{OptimizerConfig{Name: "adam"}, [3][2]float64{{0.900000002, -2.099999996}, {0.8488973956993239, -2.1986117759130273}, {0.7824417742018707, -2.243834147226119}}},
		{OptimizerConfig{Name: "adam", WeightDecay: 0.01}, [3][2]float64{{0.9000000019607843, -2.099999995652174}, {0.8471146658685269, -2.1983744353272656}, {0.7792922483137467, -2.2377457621449826}}},
		{OptimizerConfig{Name: "adamw", WeightDecay: 0.01}, [3][2]float64{{0.899000002, -2.097999996}, {0.8469983956973238, -2.1945137759170272}, {0.7796957758041733, -2.2375416334542018}}},
	} {
		opt, err := NewOptimizer(c.cfg, 2)
		if err != nil {
			t.Fatalf("%+v: %v", c.cfg, err)
		}
		p := []float32{1, -2}
		for s, g := range grads {
			opt.Step(p, g, 0.1)
			for i := range p {
				if d := math.Abs(float64(p[i]) - c.want[s][i]); d > 2e-6 {
					t.Errorf("%+v step %d: p[%d] = %.9g, want %.9g", c.cfg, s+1, i, p[i], c.want[s][i])
				}
			}
		}
	}
}

func TestOptimizerStateRoundTrip(t *testing.T) {
	grads := [][]float32{{0.5, 0.25, 1}, {-0.1, 0.4, 2}, {0.3, -0.2, -1}, {1, 1, 1}}
	for _, cfg := range []OptimizerConfig{
		{Name: "sgd"}, {Name: "momentum", Momentum: 0.9}, {Name: "nesterov", Momentum: 0.5}, {Name: "adam"}, {Name: "adamw", WeightDecay: 0.1},
	} {
		// Uninterrupted run.
		a, _ := NewOptimizer(cfg, 3)
		pa := []float32{1, 2, 3}
		for _, g := range grads {
			a.Step(pa, g, 0.05)
		}
		// Two steps, checkpoint, restore into a fresh optimizer, two more.
		b, _ := NewOptimizer(cfg, 3)
		pb := []float32{1, 2, 3}
		b.Step(pb, grads[0], 0.05)
		b.Step(pb, grads[1], 0.05)
		state := b.State()
		b.Step(pb, grads[0], 1) // the snapshot must not follow later steps
		pb = []float32{1, 2, 3}
		b, _ = NewOptimizer(cfg, 3)
		b.Step(pb, grads[0], 0.05)
		b.Step(pb, grads[1], 0.05)
		c, _ := NewOptimizer(cfg, 3)
		if err := c.SetState(state); err != nil {
			t.Fatalf("%s: SetState: %v", cfg.Name, err)
		}
		for _, g := range grads[2:] {
			c.Step(pb, g, 0.05)
		}
		for i := range pa {
			if pa[i] != pb[i] {
				t.Errorf("%s: resumed p[%d] = %v, uninterrupted %v", cfg.Name, i, pb[i], pa[i])
			}
		}
		if c.Config() != a.Config() {
			t.Errorf("%s: Config %+v != %+v", cfg.Name, c.Config(), a.Config())
		}
	}

	adam, _ := NewOptimizer(OptimizerConfig{Name: "adam"}, 3)
	names := map[string]bool{}
	for _, b := range adam.State() {
		names[b.Name] = true
	}
	if !names["exp_avg"] || !names["exp_avg_sq"] || !names["step"] {
		t.Errorf("adam state names = %v", names)
	}
	if cfg := adam.Config(); cfg.Beta1 != 0.9 || cfg.Beta2 != 0.999 || cfg.Eps != 1e-8 {
		t.Errorf("adam defaults = %+v", cfg)
	}
	for _, c := range []struct {
		bufs []NamedBuffer
		want string
	}{
		{[]NamedBuffer{{"exp_avg", make([]float32, 3)}, {"step", []float32{1}}}, `"exp_avg_sq" missing`},
		{[]NamedBuffer{{"exp_avg", make([]float32, 2)}, {"exp_avg_sq", make([]float32, 3)}, {"step", []float32{1}}}, `"exp_avg" has 2 elements, want 3`},
		{[]NamedBuffer{{"exp_avg", make([]float32, 3)}, {"exp_avg_sq", make([]float32, 3)}, {"step", []float32{1.5}}}, `"step"`},
		{[]NamedBuffer{{"momentum_buffer", make([]float32, 3)}}, `unexpected buffer "momentum_buffer"`},
	} {
		if err := adam.SetState(c.bufs); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("SetState error = %v, want it to contain %q", err, c.want)
		}
	}
}

func TestOptimizerConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  OptimizerConfig
		want string
	}{
		{OptimizerConfig{Name: "sgd"}, ""},
		{OptimizerConfig{Name: "adamw", WeightDecay: 0.01}, ""},
		{OptimizerConfig{Name: "rmsprop"}, `optimizer "rmsprop" unknown; use one of sgd, momentum, nesterov, adam, adamw`},
		{OptimizerConfig{Name: "momentum"}, "optimizer momentum 0 is out of range"},
		{OptimizerConfig{Name: "nesterov", Momentum: 1}, "optimizer momentum 1 is out of range"},
		{OptimizerConfig{Name: "sgd", Momentum: 0.9}, "use optimizer momentum or nesterov"},
		{OptimizerConfig{Name: "adam", Beta2: 1}, "optimizer beta2 1"},
		{OptimizerConfig{Name: "adam", Eps: -1}, "optimizer eps -1"},
		{OptimizerConfig{Name: "sgd", WeightDecay: -0.1}, "weight_decay -0.1"},
		{OptimizerConfig{Name: "sgd", WeightDecay: math.NaN()}, "weight_decay NaN"},
	} {
		err := c.cfg.Validate()
		if c.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", c.cfg, err)
			}
			continue
		}
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want a *ConfigError containing %q", c.cfg, err, c.want)
		}
		if _, err := NewOptimizer(c.cfg, 1); err == nil {
			t.Errorf("NewOptimizer(%+v) accepted a bad config", c.cfg)
		}
	}
}

func TestScheduleLR(t *testing.T) {
	const base = 0.1
	for _, c := range []struct {
		name string
		s    Schedule
		step int
		want float64
	}{
		{"constant", Schedule{}, 0, 0.1},
		{"constant late", Schedule{Kind: "constant"}, 1e6, 0.1},
		{"warmup first", Schedule{WarmupSteps: 4}, 0, 0.025},
		{"warmup mid", Schedule{WarmupSteps: 4}, 2, 0.075},
		{"warmup done", Schedule{WarmupSteps: 4}, 4, 0.1},
		{"negative step", Schedule{WarmupSteps: 4}, -3, 0.025},
		{"step before", Schedule{Kind: "step", StepSize: 10, Gamma: 0.5}, 9, 0.1},
		{"step first decay", Schedule{Kind: "step", StepSize: 10, Gamma: 0.5}, 10, 0.05},
		{"step twice", Schedule{Kind: "step", StepSize: 10, Gamma: 0.5}, 25, 0.025},
		{"step after warmup", Schedule{Kind: "step", WarmupSteps: 5, StepSize: 10, Gamma: 0.5}, 15, 0.05},
		{"step floor", Schedule{Kind: "step", StepSize: 1, Gamma: 0.1, MinLR: 0.001}, 5, 0.001},
		{"cosine start", Schedule{Kind: "cosine", TotalSteps: 100}, 0, 0.1},
		{"cosine half", Schedule{Kind: "cosine", TotalSteps: 100}, 50, 0.05},
		{"cosine quarter", Schedule{Kind: "cosine", TotalSteps: 100, MinLR: 0.01}, 25, 0.01 + 0.09*(1+math.Sqrt2/2)/2},
		{"cosine end", Schedule{Kind: "cosine", TotalSteps: 100, MinLR: 0.01}, 100, 0.01},
		{"cosine after end", Schedule{Kind: "cosine", TotalSteps: 100, MinLR: 0.01}, 500, 0.01},
		{"cosine warmup", Schedule{Kind: "cosine", WarmupSteps: 10, TotalSteps: 110}, 60, 0.05},
	} {
		if err := c.s.Validate(); err != nil {
			t.Errorf("%s: Validate: %v", c.name, err)
		}
		if got := c.s.LR(base, c.step); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s: LR(%v, %d) = %v, want %v", c.name, base, c.step, got, c.want)
		}
	}
	for _, c := range []struct {
		s    Schedule
		want string
	}{
		{Schedule{Kind: "linear"}, `schedule "linear" unknown`},
		{Schedule{Kind: "step", Gamma: 0.5}, "step_size 0"},
		{Schedule{Kind: "step", StepSize: 1, Gamma: 1.5}, "gamma 1.5"},
		{Schedule{Kind: "cosine", WarmupSteps: 10, TotalSteps: 10}, "total_steps 10"},
		{Schedule{WarmupSteps: -1}, "warmup_steps -1"},
	} {
		if err := c.s.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want it to contain %q", c.s, err, c.want)
		}
	}
}

func TestClipGradNorm(t *testing.T) {
	g := []float32{3, 4}
	if norm := ClipGradNorm(g, 10); norm != 5 || g[0] != 3 || g[1] != 4 {
		t.Errorf("below the limit: norm %v, grads %v", norm, g)
	}
	if norm := ClipGradNorm(g, 0); norm != 5 || g[0] != 3 {
		t.Errorf("maxNorm 0 must only measure: norm %v, grads %v", norm, g)
	}
	norm := ClipGradNorm(g, 1)
	if norm != 5 {
		t.Errorf("norm = %v, want 5", norm)
	}
	k := 1 / (5 + 1e-6)
	if math.Abs(float64(g[0])-3*k) > 1e-7 || math.Abs(float64(g[1])-4*k) > 1e-7 {
		t.Errorf("clipped grads = %v, want %v", g, []float64{3 * k, 4 * k})
	}
}
