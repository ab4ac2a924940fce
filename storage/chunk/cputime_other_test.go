//go:build !linux

package chunk

import "time"

func threadCPU() (time.Duration, bool) { return 0, false }
