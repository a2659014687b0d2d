package train

import "encoding/json"

// History is the run's curves: the training loss (thinned to at most
// maxLossPoints, evenly over steps) and every evaluation. It travels in each
// checkpoint manifest so plots survive restarts.
type History struct {
	Loss []Point     `json:"loss"`
	Eval []EvalPoint `json:"eval"`
	// every keeps one loss point in every `every` steps; it doubles when the
	// curve is full.
	Every int64 `json:"every"`
}

// Point is one training-loss sample.
type Point struct {
	Step int64   `json:"step"`
	Loss float64 `json:"loss"`
}

// EvalPoint is one evaluation on the test set.
type EvalPoint struct {
	Step     int64   `json:"step"`
	Loss     float64 `json:"loss"`
	Accuracy float64 `json:"accuracy"`
}

const maxLossPoints = 2000

// AddLoss records the loss of step (thinned).
func (h *History) AddLoss(step int64, loss float64) {
	if h.Every == 0 {
		h.Every = 1
	}
	if step%h.Every != 0 {
		return
	}
	h.Loss = append(h.Loss, Point{step, loss})
	if len(h.Loss) >= maxLossPoints {
		h.Every *= 2
		kept := h.Loss[:0]
		for _, p := range h.Loss {
			if p.Step%h.Every == 0 {
				kept = append(kept, p)
			}
		}
		h.Loss = kept
	}
}

// AddEval records an evaluation.
func (h *History) AddEval(step int64, loss, acc float64) {
	h.Eval = append(h.Eval, EvalPoint{step, loss, acc})
}

// Load replaces h with the history stored in a manifest (ignored if absent or unreadable).
func (h *History) Load(raw json.RawMessage) {
	if len(raw) == 0 {
		return
	}
	var n History
	if json.Unmarshal(raw, &n) == nil {
		*h = n
	}
}
