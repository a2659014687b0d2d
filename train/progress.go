package train

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Progress draws a one-line bar with ETA on a terminal; a nil writer draws nothing.
type Progress struct {
	w     io.Writer
	total int64
	start time.Time
	first int64
	last  time.Time
}

// NewProgress is a bar for a run of total steps.
func NewProgress(w io.Writer, total int64) *Progress {
	return &Progress{w: w, total: total}
}

// Update redraws the bar at step (at most ten times a second).
func (p *Progress) Update(step int64, loss float64) {
	if p.w == nil {
		return
	}
	now := time.Now()
	if p.start.IsZero() {
		p.start, p.first = now, step-1
	}
	if now.Sub(p.last) < 100*time.Millisecond && step < p.total {
		return
	}
	p.last = now
	const width = 30
	frac := float64(step) / float64(max(p.total, 1))
	filled := int(frac * width)
	eta := "?"
	if done := step - p.first; done > 0 {
		rem := time.Duration(float64(now.Sub(p.start)) / float64(done) * float64(p.total-step))
		eta = rem.Round(time.Second).String()
	}
	fmt.Fprintf(p.w, "\r[%s%s] %3.0f%% step %d/%d loss %.4f ETA %s   ",
		strings.Repeat("=", filled), strings.Repeat(" ", width-filled), 100*frac, step, p.total, loss, eta)
}

// Finish ends the bar's line.
func (p *Progress) Finish() {
	if p.w != nil && !p.start.IsZero() {
		fmt.Fprintln(p.w)
	}
}
