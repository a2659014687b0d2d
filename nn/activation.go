package nn

import "math"

// activation is an elementwise (or, for softmax, row-wise) nonlinearity a = f(z).
type activation uint8

const (
	actIdentity activation = iota
	actLogistic
	actTanh
	actReLU
	actLeakyReLU
	actSoftmax
	actSwish
	actMish
	actGELU
)

const activationList = "identity, logistic, tanh, relu, leaky_relu, softmax, swish, mish, gelu"

// leakySlope is PyTorch's default negative_slope for nn.LeakyReLU.
const leakySlope = 0.01

var activationByName = map[string]activation{
	"identity":   actIdentity,
	"logistic":   actLogistic,
	"sigmoid":    actLogistic,
	"tanh":       actTanh,
	"relu":       actReLU,
	"leaky_relu": actLeakyReLU,
	"softmax":    actSoftmax,
	"swish":      actSwish,
	"silu":       actSwish,
	"mish":       actMish,
	"gelu":       actGELU,
}

// needsZ reports whether the derivative needs the pre-activation z. When it
// does not, the derivative is computed from a = f(z) alone and the network
// stores z and a in one buffer.
func (f activation) needsZ() bool {
	return f == actSwish || f == actMish || f == actGELU
}

// forward sets a = f(z) for a row-major matrix with cols columns. a may be z.
func (f activation) forward(z, a []float32, cols int) {
	a = a[:len(z)]
	switch f {
	case actIdentity:
		copy(a, z)
	case actLogistic:
		for i, v := range z {
			a[i] = float32(sigmoid(float64(v)))
		}
	case actTanh:
		for i, v := range z {
			a[i] = float32(math.Tanh(float64(v)))
		}
	case actReLU:
		// Branchless max(z, 0): clear every bit of a negative number (sign
		// bit set). The branchy form mispredicts on half the inputs.
		for i, v := range z {
			b := math.Float32bits(v)
			a[i] = math.Float32frombits(b &^ uint32(int32(b)>>31))
		}
	case actLeakyReLU:
		for i, v := range z {
			if v < 0 {
				v *= leakySlope
			}
			a[i] = v
		}
	case actSoftmax:
		for r := 0; r < len(z); r += cols {
			softmaxRow(z[r:r+cols], a[r:r+cols])
		}
	case actSwish:
		for i, v := range z {
			x := float64(v)
			a[i] = float32(x * sigmoid(x))
		}
	case actMish:
		for i, v := range z {
			x := float64(v)
			a[i] = float32(x * math.Tanh(softplus(x)))
		}
	case actGELU:
		for i, v := range z {
			x := float64(v)
			a[i] = float32(x * normCDF(x))
		}
	}
}

// backward turns g = ∂L/∂a into ∂L/∂z in place: g ∘ f'(z) for the elementwise
// activations, the Jacobian-vector product diag(a)(g - (g·a)1) per row for
// softmax. z may be a when !f.needsZ(); otherwise z is the pre-activation.
func (f activation) backward(g, z, a []float32, cols int) {
	a = a[:len(g)]
	switch f {
	case actIdentity:
	case actLogistic:
		for i, y := range a {
			g[i] *= y * (1 - y)
		}
	case actTanh:
		for i, y := range a {
			g[i] *= 1 - y*y
		}
	case actReLU:
		// Branchless: keep g where a > 0, i.e. where the bits of a are
		// neither zero nor sign-bit-set; (b-1)|b has its sign bit set
		// exactly in the other cases.
		g = g[:len(a)]
		for i, y := range a {
			b := math.Float32bits(y)
			drop := uint32(int32((b-1)|b) >> 31)
			g[i] = math.Float32frombits(math.Float32bits(g[i]) &^ drop)
		}
	case actLeakyReLU:
		for i, y := range a {
			if y <= 0 {
				g[i] *= leakySlope
			}
		}
	case actSoftmax:
		for r := 0; r < len(g); r += cols {
			gr, ar := g[r:r+cols], a[r:r+cols]
			var dot float64
			for j, y := range ar {
				dot += float64(gr[j]) * float64(y)
			}
			d := float32(dot)
			for j, y := range ar {
				gr[j] = y * (gr[j] - d)
			}
		}
	case actSwish:
		z = z[:len(g)]
		for i, v := range z {
			x := float64(v)
			s := sigmoid(x)
			g[i] *= float32(s * (1 + x*(1-s)))
		}
	case actMish:
		z = z[:len(g)]
		for i, v := range z {
			x := float64(v)
			t := math.Tanh(softplus(x))
			g[i] *= float32(t + x*(1-t*t)*sigmoid(x))
		}
	case actGELU:
		z = z[:len(g)]
		for i, v := range z {
			x := float64(v)
			g[i] *= float32(normCDF(x) + x*normPDF(x))
		}
	}
}

// softmaxRow sets a = softmax(z), shifting by the maximum so that no exponent
// overflows. a may be z.
func softmaxRow(z, a []float32) {
	m := z[0]
	for _, v := range z[1:] {
		m = max(m, v)
	}
	var sum float64
	for j, v := range z {
		e := math.Exp(float64(v - m))
		a[j] = float32(e)
		sum += e
	}
	inv := 1 / sum
	for j := range a[:len(z)] {
		a[j] = float32(float64(a[j]) * inv)
	}
}

// sigmoid is 1/(1+e^-x), finite and in [0, 1] for every x.
func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// softplus is log(1+e^x) without overflow.
func softplus(x float64) float64 {
	return max(x, 0) + math.Log1p(math.Exp(-math.Abs(x)))
}

func normCDF(x float64) float64 { return 0.5 * math.Erfc(-x/math.Sqrt2) }

func normPDF(x float64) float64 { return math.Exp(-0.5*x*x) / math.Sqrt(2*math.Pi) }
