package checkpoint

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestModelTensors(t *testing.T) {
	layers := []int{3, 2, 1}
	params := make([]float32, paramCount(layers)) // 3*2+2 + 2*1+1 = 11
	for i := range params {
		params[i] = float32(i)
	}
	ts := ModelTensors(layers, params)
	want := []struct {
		name  string
		shape []int
		data  []float32
	}{
		{"layers.0.weight", []int{2, 3}, []float32{0, 1, 2, 3, 4, 5}},
		{"layers.0.bias", []int{2}, []float32{6, 7}},
		{"layers.1.weight", []int{1, 2}, []float32{8, 9}},
		{"layers.1.bias", []int{1}, []float32{10}},
	}
	if len(ts) != len(want) {
		t.Fatalf("got %d tensors, want %d", len(ts), len(want))
	}
	for i, w := range want {
		if ts[i].Name != w.name || !slices.Equal(ts[i].Shape, w.shape) || !slices.Equal(ts[i].Data, w.data) {
			t.Fatalf("tensor %d = %+v, want %+v", i, ts[i], w)
		}
	}
	ts[1].Data[0] = 99 // views, not copies
	if params[6] != 99 {
		t.Fatal("ModelTensors copied the parameters")
	}

	got := make([]float32, len(params))
	if err := ParamsFromTensors(layers, ts, got); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, params) {
		t.Fatalf("round trip = %v, want %v", got, params)
	}
}

func TestModelTensorsPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("ModelTensors with a short buffer did not panic")
		}
	}()
	ModelTensors([]int{3, 2}, make([]float32, 7))
}

func TestParamsFromTensorsErrors(t *testing.T) {
	layers := []int{3, 2, 1}
	params := make([]float32, paramCount(layers))
	good := ModelTensors(layers, params)
	tests := []struct {
		name string
		ts   []Tensor
		buf  []float32
		want string
	}{
		{"missing", good[:3], params, "tensor layers.1.bias is missing"},
		{"shape", append(slices.Clone(good[:2]), Tensor{Name: "layers.1.weight", Shape: []int{2, 1}, Data: []float32{0, 0}}, good[3]),
			params, "tensor layers.1.weight has shape [2 1], layers 3-2-1 need [1 2]"},
		{"extra", append(slices.Clone(good), Tensor{Name: "layers.2.weight", Shape: []int{1, 1}, Data: []float32{0}}),
			params, "tensor layers.2.weight is not part of a model with layers 3-2-1"},
		{"duplicate", append(slices.Clone(good), good[0]), params, "layers.0.weight appears twice"},
		{"buffer", good, make([]float32, 3), "need 11 parameters, the buffer has 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ParamsFromTensors(layers, tt.ts, tt.buf)
			if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrMismatch containing %q", err, tt.want)
			}
		})
	}
}
