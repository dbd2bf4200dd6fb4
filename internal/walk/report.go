package walk

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/testbed"
)

// Print writes the summary: a row per step, then what became of each
// connection, then the files.
func (r *Report) Print(w io.Writer) {
	pm := "mptcpd-go with its built-in policy"
	if r.Baseline {
		pm = "the kernel alone (static endpoints)"
	}
	fmt.Fprintf(w, "\nThe walk under %s.\n", pm)
	fmt.Fprintf(w, "Stall: the longest time without data within the step, counted from its event,\n")
	fmt.Fprintf(w, "for the bulk upload and the ssh-like interactive stream. Mbit/s: what the\n")
	fmt.Fprintf(w, "laptop sent on each link during the step.\n\n")
	var devs []string
	if len(r.Steps) > 0 {
		devs = slices.Sorted(maps.Keys(r.Steps[0].Tx))
	}
	head := []string{fmt.Sprintf("%-18s", "step"), fmt.Sprintf("%10s", "bulk stall"), fmt.Sprintf("%10s", "ssh stall")}
	for _, d := range devs {
		head = append(head, fmt.Sprintf("%12s", d+" Mbit/s"))
	}
	fmt.Fprintln(w, strings.Join(head, "  "))
	for _, s := range r.Steps {
		row := []string{fmt.Sprintf("%-18s", s.Name), fmt.Sprintf("%10s", formatStall(s.BulkStall)), fmt.Sprintf("%10s", formatStall(s.EchoStall))}
		for _, d := range devs {
			row = append(row, fmt.Sprintf("%12.1f", s.Tx[d]/1e6))
		}
		fmt.Fprintln(w, strings.Join(row, "  "))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "bulk upload: %s\n", survival(r.Bulk))
	fmt.Fprintf(w, "interactive: %s\n", survival(r.Echo))
	if rtt := r.Echo.RTTs; len(rtt) > 0 {
		rtt = slices.Sorted(slices.Values(rtt))
		fmt.Fprintf(w, "             %d messages echoed; round trip p50 %s, p99 %s, max %s\n",
			len(rtt), formatStall(quantile(rtt, 0.5)), formatStall(quantile(rtt, 0.99)), formatStall(rtt[len(rtt)-1]))
	}
	if len(r.Files) > 0 {
		fmt.Fprintf(w, "\nFiles: %s\n", strings.Join(r.Files, " "))
	}
}

// Survived reports whether both connections lived through the walk with
// every byte verified.
func (r *Report) Survived() bool { return r.Bulk.Survived && r.Echo.Survived }

func survival(res testbed.Result) string {
	if res.Survived {
		return fmt.Sprintf("survived; %.1f MB sent, every byte received and verified", float64(res.Sent)/1e6)
	}
	return fmt.Sprintf("LOST: %v (%.1f MB sent, %.1f MB received, %.1f MB verified)",
		res.Err, float64(res.Sent)/1e6, float64(res.Received)/1e6, float64(res.Verified)/1e6)
}

// quantile is the q-quantile of sorted d, nearest rank.
func quantile(d []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(d))+0.5) - 1
	return d[min(max(i, 0), len(d)-1)]
}

func formatStall(d time.Duration) string {
	switch {
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1e3)
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// formatTx is "wlan0 47.9, wwan0 0.0 Mbit/s".
func formatTx(tx map[string]float64) string {
	var parts []string
	for _, d := range slices.Sorted(maps.Keys(tx)) {
		parts = append(parts, fmt.Sprintf("%s %.1f", d, tx[d]/1e6))
	}
	return strings.Join(parts, ", ") + " Mbit/s"
}
