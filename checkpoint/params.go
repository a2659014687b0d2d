package checkpoint

import (
	"fmt"
	"slices"
	"strings"
)

// LayerWeight names the weight of linear layer i, counted from 0 at the input.
func LayerWeight(i int) string { return fmt.Sprintf("layers.%d.weight", i) }

// LayerBias names the bias of linear layer i, counted from 0 at the input.
func LayerBias(i int) string { return fmt.Sprintf("layers.%d.bias", i) }

// paramCount returns the number of parameters of an MLP with the given
// layer sizes, input first.
func paramCount(layers []int) int {
	n := 0
	for i := 0; i+1 < len(layers); i++ {
		n += layers[i+1]*layers[i] + layers[i+1]
	}
	return n
}

// ModelTensors splits params, the parameters of an MLP with layer sizes
// layers (input first, e.g. 784-128-10), into named tensors: for each layer
// i the weight layers.<i>.weight [out, in] then the bias layers.<i>.bias
// [out], laid out contiguously in that order. The tensors are views of
// params, not copies. It panics if len(params) does not match layers.
func ModelTensors(layers []int, params []float32) []Tensor {
	if want := paramCount(layers); len(params) != want {
		panic(fmt.Sprintf("checkpoint: ModelTensors: layers %v need %d parameters, got %d", layers, want, len(params)))
	}
	ts := make([]Tensor, 0, 2*max(0, len(layers)-1))
	off := 0
	for i := 0; i+1 < len(layers); i++ {
		in, out := layers[i], layers[i+1]
		w := params[off : off+out*in : off+out*in]
		off += out * in
		b := params[off : off+out : off+out]
		off += out
		ts = append(ts,
			Tensor{Name: LayerWeight(i), Shape: []int{out, in}, Data: w},
			Tensor{Name: LayerBias(i), Shape: []int{out}, Data: b})
	}
	return ts
}

// ParamsFromTensors is the inverse of ModelTensors: it copies the named
// tensors ts into params, laid out for layer sizes layers. It returns an
// error wrapping ErrMismatch naming the tensor when one is missing, has
// another shape, or is not part of the model, and when len(params) does not
// match layers.
func ParamsFromTensors(layers []int, ts []Tensor, params []float32) error {
	if want := paramCount(layers); len(params) != want {
		return fmt.Errorf("%w: layers %s need %d parameters, the buffer has %d", ErrMismatch, layerString(layers), want, len(params))
	}
	byName := make(map[string]Tensor, len(ts))
	for _, t := range ts {
		if _, dup := byName[t.Name]; dup {
			return fmt.Errorf("%w: tensor %s appears twice", ErrMismatch, t.Name)
		}
		byName[t.Name] = t
	}
	dst := ModelTensors(layers, params)
	for _, want := range dst {
		t, ok := byName[want.Name]
		if !ok {
			return fmt.Errorf("%w: tensor %s is missing; the checkpoint was written for other layer sizes than %s",
				ErrMismatch, want.Name, layerString(layers))
		}
		if !slices.Equal(t.Shape, want.Shape) || len(t.Data) != len(want.Data) {
			return fmt.Errorf("%w: tensor %s has shape %v, layers %s need %v",
				ErrMismatch, want.Name, t.Shape, layerString(layers), want.Shape)
		}
	}
	if len(byName) > len(dst) {
		var extra []string
		for name := range byName {
			if !slices.ContainsFunc(dst, func(t Tensor) bool { return t.Name == name }) {
				extra = append(extra, name)
			}
		}
		slices.Sort(extra)
		return fmt.Errorf("%w: tensor %s is not part of a model with layers %s; the checkpoint was written for other layer sizes",
			ErrMismatch, extra[0], layerString(layers))
	}
	for _, want := range dst {
		copy(want.Data, byName[want.Name].Data)
	}
	return nil
}

// layerString writes layer sizes the way --layers takes them: 784-128-10.
func layerString(layers []int) string {
	parts := make([]string, len(layers))
	for i, l := range layers {
		parts[i] = fmt.Sprint(l)
	}
	return strings.Join(parts, "-")
}
