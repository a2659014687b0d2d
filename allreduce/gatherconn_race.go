//go:build race

package allreduce

// raceEnabled: the race detector sees a write(2) on a socket happen before the
// read(2) of its bytes, but not a writev(2); gatherConn writes with write(2)
// in race builds so that the detector keeps that order.
const raceEnabled = true
