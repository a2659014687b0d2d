//go:build !unix

package allreduce

import "time"

// processCPU is not measured here: bench results carry no cpu_ms.
func processCPU() time.Duration { return 0 }
