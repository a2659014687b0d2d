package nn

import (
	"strconv"
	"strings"
)

// Spec describes a fully connected network.
type Spec struct {
	// Layers are the layer widths from the input to the output, e.g.
	// [784 512 512 10]: three dense layers. At least two entries, all positive.
	Layers []int
	// Activation is the hidden activation: identity, logistic (alias sigmoid),
	// tanh, relu, leaky_relu (slope 0.01), softmax, swish (alias silu), mish or
	// gelu (exact, erf form). It may be empty only when there is no hidden layer.
	Activation string
	// Output is the output activation. Empty means the loss's natural one:
	// identity for cross_entropy (softmax is fused into the loss) and mse,
	// logistic for bce. bce accepts only logistic; cross_entropy rejects softmax.
	Output string
	// Loss is cross_entropy (softmax cross-entropy with integer labels), bce
	// (binary cross-entropy on a logistic output, computed from the logits) or
	// mse. See ComputeGradients for the per-example conventions.
	Loss string
}

// ParseLayers parses layer widths written from the input, joined by '-', e.g.
// "784-512-512-10".
func ParseLayers(s string) ([]int, error) {
	const fix = "write at least two positive widths from the input joined by '-', e.g. 784-512-10"
	parts := strings.Split(strings.TrimSpace(s), "-")
	if len(parts) < 2 {
		return nil, configErr("layers", s, "has fewer than 2 layers", fix)
	}
	layers := make([]int, len(parts))
	for i, p := range parts {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return nil, configErr("layers", s, "has "+strconv.Quote(p)+" at position "+strconv.Itoa(i)+", not an integer", fix)
		}
		if v <= 0 {
			return nil, configErr("layers", s, "has non-positive width "+strconv.Itoa(v)+" at position "+strconv.Itoa(i), fix)
		}
		layers[i] = v
	}
	return layers, nil
}

// Validate checks the layer widths, the names and their combination.
func (s Spec) Validate() error {
	_, err := s.resolve()
	return err
}

// NumParams is the number of weights and biases: the sum over dense layers of
// out*(in+1).
func (s Spec) NumParams() int {
	total := 0
	for i := 0; i+1 < len(s.Layers); i++ {
		total += s.Layers[i+1] * (s.Layers[i] + 1)
	}
	return total
}

// resolved is a validated Spec in the form the network runs.
type resolved struct {
	hidden, output activation
	loss           lossKind
}

func (s Spec) resolve() (resolved, error) {
	var r resolved
	if len(s.Layers) < 2 {
		return r, configErr("layers", s.Layers, "has fewer than 2 entries", "give the widths from the input to the output, e.g. [784 512 10]")
	}
	for i, w := range s.Layers {
		if w <= 0 {
			return r, configErr("layers", s.Layers, "has non-positive width "+strconv.Itoa(w)+" at position "+strconv.Itoa(i), "use positive widths")
		}
	}
	loss, ok := lossByName[s.Loss]
	if !ok {
		return r, configErr("loss", s.Loss, "unknown", "use one of cross_entropy, bce, mse")
	}
	r.loss = loss
	if s.Activation == "" && len(s.Layers) == 2 {
		r.hidden = actIdentity // no hidden layer to apply it to
	} else if r.hidden, ok = activationByName[s.Activation]; !ok {
		return r, configErr("activation", s.Activation, "unknown", "use one of "+activationList)
	}
	out := s.Layers[len(s.Layers)-1]
	switch {
	case s.Output == "":
		r.output = loss.naturalOutput()
	default:
		if r.output, ok = activationByName[s.Output]; !ok {
			return r, configErr("output", s.Output, "unknown", "use one of "+activationList+", or leave it empty for the loss's natural one")
		}
	}
	switch {
	case loss == lossCrossEntropy && r.output == actSoftmax:
		return r, configErr("output", s.Output, "with loss cross_entropy would apply softmax twice", "leave output empty (cross_entropy fuses softmax) or use identity")
	case loss == lossBCE && r.output != actLogistic:
		return r, configErr("output", s.Output, "is not supported with loss bce", "leave output empty or use logistic; bce is computed from the logits")
	case loss == lossCrossEntropy && out < 2:
		return r, configErr("layers", s.Layers, "end in 1 output, too few for cross_entropy", "use at least 2 classes, or loss bce for a single binary output")
	}
	return r, nil
}
