package train

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// PlotFile is the name of the curves PNG written next to a checkpoint.
const PlotFile = "curves.png"

// ErrEmptyHistory is returned by PlotHistory for a history without points.
var ErrEmptyHistory = errors.New("train: empty history")

// Plot size: 9 × 6 inches at 100 dpi, a 900 × 600 pixel PNG.
const (
	plotWidth  = 9 * vg.Inch
	plotHeight = 6 * vg.Inch
	plotDPI    = 100
)

var (
	colorTrain    = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff} // blue
	colorTestLoss = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff} // orange
	colorAccuracy = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff} // green
)

// PlotHistory writes h as a PNG to path: the training and test loss over
// steps in the upper panel, the test accuracy in the lower one (which is
// left out when the run never evaluated). Non-finite values are skipped.
// The file is written to a temporary name and renamed, so a reader never
// sees half a PNG.
func PlotHistory(h History, path string) error {
	train, testLoss, acc := plotter.XYs{}, plotter.XYs{}, plotter.XYs{}
	for _, p := range h.Loss {
		if finite(p.Loss) {
			train = append(train, plotter.XY{X: float64(p.Step), Y: p.Loss})
		}
	}
	for _, e := range h.Eval {
		if finite(e.Loss) {
			testLoss = append(testLoss, plotter.XY{X: float64(e.Step), Y: e.Loss})
		}
		if finite(e.Accuracy) {
			acc = append(acc, plotter.XY{X: float64(e.Step), Y: e.Accuracy})
		}
	}
	if len(train) == 0 && len(testLoss) == 0 && len(acc) == 0 {
		return fmt.Errorf("%w: no loss or evaluation points to plot for %s (was the run checkpointed before its first step?)", ErrEmptyHistory, path)
	}

	lossPlot := plot.New()
	lossPlot.Title.Text = "Training curves"
	lossPlot.X.Label.Text = "step"
	lossPlot.Y.Label.Text = "loss"
	lossPlot.Add(plotter.NewGrid())
	lossPlot.Legend.Top = true
	if len(train) > 0 {
		l, err := plotter.NewLine(train)
		if err != nil {
			return fmt.Errorf("train: plot training loss: %w", err)
		}
		l.Color, l.Width = colorTrain, vg.Points(1.2)
		lossPlot.Add(l)
		lossPlot.Legend.Add("training loss", l)
	}
	if len(testLoss) > 0 {
		l, s, err := linePoints(testLoss, colorTestLoss, "test loss")
		if err != nil {
			return err
		}
		lossPlot.Add(l, s)
		lossPlot.Legend.Add("test loss", l, s)
	}
	if lossPlot.Y.Min > 0 {
		lossPlot.Y.Min = 0 // losses are non-negative; anchor the scale
	}

	rows := [][]*plot.Plot{{lossPlot}}
	if len(acc) > 0 {
		accPlot := plot.New()
		accPlot.X.Label.Text = "step"
		accPlot.Y.Label.Text = "test accuracy"
		accPlot.Add(plotter.NewGrid())
		accPlot.Legend.Top = false // accuracy rises: the lower right is free
		l, s, err := linePoints(acc, colorAccuracy, "accuracy")
		if err != nil {
			return err
		}
		accPlot.Add(l, s)
		accPlot.Legend.Add("test accuracy", l, s)
		accPlot.Y.Min = 0
		accPlot.Y.Max = max(1, accPlot.Y.Max)
		// Share the step range so the panels line up.
		accPlot.X.Min = min(accPlot.X.Min, lossPlot.X.Min)
		accPlot.X.Max = max(accPlot.X.Max, lossPlot.X.Max)
		lossPlot.X.Min, lossPlot.X.Max = accPlot.X.Min, accPlot.X.Max
		rows = append(rows, []*plot.Plot{accPlot})
	}

	img := vgimg.NewWith(vgimg.UseWH(plotWidth, plotHeight), vgimg.UseDPI(plotDPI),
		vgimg.UseBackgroundColor(color.White))
	dc := draw.New(img)
	tiles := draw.Tiles{
		Rows: len(rows), Cols: 1,
		PadTop: vg.Points(8), PadBottom: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(16),
		PadY: vg.Points(16),
	}
	canvases := plot.Align(rows, tiles, dc)
	for i := range rows {
		rows[i][0].Draw(canvases[i][0])
	}
	return writePNG(path, vgimg.PngCanvas{Canvas: img})
}

// linePoints is a line with a dot at each point, in c; what names the curve in errors.
func linePoints(xys plotter.XYs, c color.Color, what string) (*plotter.Line, *plotter.Scatter, error) {
	l, s, err := plotter.NewLinePoints(xys)
	if err != nil {
		return nil, nil, fmt.Errorf("train: plot %s: %w", what, err)
	}
	l.Color, l.Width = c, vg.Points(1.5)
	s.Color, s.Shape, s.Radius = c, draw.CircleGlyph{}, vg.Points(2.5)
	return l, s, nil
}

func writePNG(path string, png vgimg.PngCanvas) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("train: write plot: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := png.WriteTo(tmp); err != nil {
		return fmt.Errorf("train: write plot %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("train: write plot %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("train: write plot %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("train: write plot: %w", err)
	}
	return nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
