//go:build !amd64 || noasm

package train

func fixedSIMD(acc []int64, g []float32, scale float64, add bool) int { return 0 }
func fromFixedSIMD(g []float32, acc []int64, scale float64) int       { return 0 }
