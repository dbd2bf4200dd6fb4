//go:build !linux

package srcroute

import (
	"fmt"
	"runtime"
)

func newKernel(int) (kernel, error) {
	return nil, fmt.Errorf("srcroute: not supported on %s (needs Linux rtnetlink)", runtime.GOOS)
}
