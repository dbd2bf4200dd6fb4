// Command demo is make demo: the roaming walk of package walk, on a
// virtual laptop in network namespaces, with the mptcpd given by -mptcpd.
// It needs root; it touches nothing outside the namespaces it makes, and
// removes them, also on Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/mptcpd-go/mptcpd/internal/walk"
)

func main() {
	var cfg walk.Config
	baseline := flag.Bool("baseline", false, "no daemon: the kernel alone with a static endpoint per link, for comparison")
	flag.StringVar(&cfg.Mptcpd, "mptcpd", "bin/mptcpd", "the mptcpd binary to run on the laptop")
	flag.StringVar(&cfg.Dir, "o", "demo-out", "directory for the trace, its plot and the daemon's log")
	flag.DurationVar(&cfg.Dwell, "dwell", walk.DefaultDwell, "stay at each access point (walking between two takes half)")
	flag.DurationVar(&cfg.BlackZone, "black-zone", walk.DefaultBlackZone, "time on 4G alone with 4G forwarding nothing")
	flag.DurationVar(&cfg.Outage, "outage", walk.DefaultOutage, "time with no link at all")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "demo: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	if cfg.Dwell <= 0 || cfg.BlackZone <= 0 || cfg.Outage <= 0 {
		fmt.Fprintln(os.Stderr, "demo: -dwell, -black-zone and -outage must be positive")
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo: needs root (it makes network namespaces)")
		os.Exit(1)
	}
	if *baseline {
		cfg.Mptcpd = ""
	} else if _, err := os.Stat(cfg.Mptcpd); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v (make demo builds it)\n", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg.Out = os.Stdout
	rep, err := walk.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	if !rep.Survived() {
		os.Exit(3)
	}
}
