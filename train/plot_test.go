package train

import (
	"errors"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testHistory() History {
	var h History
	for s := int64(0); s <= 500; s += 5 {
		h.AddLoss(s, 2.3*math.Exp(-float64(s)/150)+0.05*math.Sin(float64(s)))
	}
	for s := int64(100); s <= 500; s += 100 {
		h.AddEval(s, 2*math.Exp(-float64(s)/170), 1-0.9*math.Exp(-float64(s)/120))
	}
	return h
}

// decodePNG decodes path and checks its size and that it is not blank.
func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s is not a PNG: %v", path, err)
	}
	b := img.Bounds()
	if b.Dx() != 900 || b.Dy() != 600 {
		t.Fatalf("PNG is %d×%d, want 900×600", b.Dx(), b.Dy())
	}
	colors := map[[3]uint32]int{}
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colors[[3]uint32{r >> 8, g >> 8, bl >> 8}]++
		}
	}
	if len(colors) < 4 {
		t.Fatalf("PNG has %d distinct colours; it looks blank", len(colors))
	}
	return img
}

// hasColor reports whether img has a pixel close to the colour (r, g, b).
func hasColor(img image.Image, r0, g0, b0 uint8) bool {
	b := img.Bounds()
	near := func(a uint32, c uint8) bool { d := int(a>>8) - int(c); return d > -24 && d < 24 }
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if near(r, r0) && near(g, g0) && near(bl, b0) {
				return true
			}
		}
	}
	return false
}

func TestPlotHistory(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		h                    History
		wantTrain, wantAccur bool
	}{
		{"full", testHistory(), true, true},
		{"loss only", History{Loss: testHistory().Loss}, true, false},
		{"eval only", History{Eval: testHistory().Eval}, false, true},
		{"one point", History{Loss: []Point{{Step: 3, Loss: 1}}}, true, false},
		{"non-finite skipped", History{Loss: []Point{{1, math.NaN()}, {2, 1}, {3, math.Inf(1)}, {4, 0.5}}}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "curves.png")
			if err := PlotHistory(tc.h, path); err != nil {
				t.Fatal(err)
			}
			img := decodePNG(t, path)
			if got := hasColor(img, colorTrain.R, colorTrain.G, colorTrain.B); got != tc.wantTrain {
				t.Errorf("training-loss colour drawn: %v, want %v", got, tc.wantTrain)
			}
			if got := hasColor(img, colorAccuracy.R, colorAccuracy.G, colorAccuracy.B); got != tc.wantAccur {
				t.Errorf("accuracy colour drawn: %v, want %v", got, tc.wantAccur)
			}
			// No temporary file is left behind.
			if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
				t.Errorf("directory holds %d entries, want only curves.png", len(ents))
			}
		})
	}
}

func TestPlotHistoryEmpty(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "curves.png")
	for _, h := range []History{{}, {Loss: []Point{{1, math.NaN()}}}} {
		err := PlotHistory(h, path)
		if !errors.Is(err, ErrEmptyHistory) {
			t.Fatalf("PlotHistory(empty) = %v, want ErrEmptyHistory", err)
		}
		if !strings.Contains(err.Error(), "no loss or evaluation points") || !strings.Contains(err.Error(), path) {
			t.Errorf("error %q does not say what is missing and where", err)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("an empty history left %d files", len(ents))
	}
}

func TestPlotHistoryBadPath(t *testing.T) {
	err := PlotHistory(testHistory(), filepath.Join(t.TempDir(), "missing", "curves.png"))
	if err == nil {
		t.Fatal("PlotHistory into a missing directory: no error")
	}
}
