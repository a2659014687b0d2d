package nn

import "math"

type lossKind uint8

const (
	lossCrossEntropy lossKind = iota
	lossBCE
	lossMSE
)

var lossByName = map[string]lossKind{
	"cross_entropy": lossCrossEntropy,
	"bce":           lossBCE,
	"mse":           lossMSE,
}

func (l lossKind) naturalOutput() activation {
	if l == lossBCE {
		return actLogistic
	}
	return actIdentity
}

// crossEntropy treats each row of logits as class scores. It writes the softmax
// probabilities to probs and, when delta is non-nil, delta = scale*(probs -
// onehot(label)) = scale*∂loss/∂logits. It returns the sum over rows of
// -log softmax(logits)[label], computed as logsumexp(z) - z[label] with the
// maximum subtracted first, so that it is finite for any finite logits.
func crossEntropy(op string, logits []float32, labels []int32, cols int, probs, delta []float32, scale float32) float64 {
	var total float64
	for r := range labels {
		z := logits[r*cols : (r+1)*cols]
		p := probs[r*cols : (r+1)*cols]
		label := labels[r]
		if label < 0 || int(label) >= cols {
			panic(&LabelError{Op: op, Row: r, Label: label, Classes: cols})
		}
		m := z[0]
		for _, v := range z[1:] {
			m = max(m, v)
		}
		var sum float64
		for j, v := range z {
			e := math.Exp(float64(v) - float64(m))
			p[j] = float32(e)
			sum += e
		}
		total += math.Log(sum) - (float64(z[label]) - float64(m))
		inv := 1 / sum
		for j := range p {
			p[j] = float32(float64(p[j]) * inv)
		}
		if delta != nil {
			d := delta[r*cols : (r+1)*cols]
			for j, pj := range p {
				d[j] = scale * pj
			}
			d[label] -= scale
		}
	}
	return total
}

// binaryCrossEntropy is torch.nn.BCEWithLogitsLoss per row: the mean over the
// columns of max(z,0) - z*t + log(1+e^-|z|). probs holds sigmoid(z). When delta
// is non-nil it is set to scale*(sigmoid(z) - t)/cols = scale*∂loss/∂z, the
// logistic output's derivative fused in. It returns the sum over rows.
func binaryCrossEntropy(z, targets, probs []float32, cols int, delta []float32, scale float32) float64 {
	var total float64
	rows := len(z) / cols
	k := scale / float32(cols)
	for r := range rows {
		var sum float64
		for j := r * cols; j < (r+1)*cols; j++ {
			x, t := float64(z[j]), float64(targets[j])
			sum += max(x, 0) - x*t + math.Log1p(math.Exp(-math.Abs(x)))
			if delta != nil {
				delta[j] = k * (probs[j] - targets[j])
			}
		}
		total += sum / float64(cols)
	}
	return total
}

// meanSquaredError is torch.nn.MSELoss per row: the mean over the columns of
// (y-t)². When delta is non-nil it is set to scale*2(y-t)/cols = scale*∂loss/∂y.
// It returns the sum over rows.
func meanSquaredError(y, targets []float32, cols int, delta []float32, scale float32) float64 {
	var total float64
	rows := len(y) / cols
	k := 2 * scale / float32(cols)
	for r := range rows {
		var sum float64
		for j := r * cols; j < (r+1)*cols; j++ {
			e := y[j] - targets[j]
			sum += float64(e) * float64(e)
			if delta != nil {
				delta[j] = k * e
			}
		}
		total += sum / float64(cols)
	}
	return total
}
