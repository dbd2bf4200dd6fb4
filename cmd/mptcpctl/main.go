// Command mptcpctl configures the kernel's MPTCP path manager with the
// grammar and output of `ip mptcp`; see internal/ctl.
package main

import (
	"os"

	"github.com/mptcpd-go/mptcpd/internal/ctl"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "devel"

func main() {
	os.Exit(ctl.Main(os.Args[1:], ctl.Env{Stdout: os.Stdout, Stderr: os.Stderr, Version: version}))
}
