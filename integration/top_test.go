package integration

// A test of `mptcpctl top` on the real kernel: one view of the laptop
// during an upload over two links.

import (
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mptcpd-go/mptcpd/internal/testbed"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
)

// TestTopOnce: `mptcpctl -n LAPTOP top --once`, run while an upload uses
// both links, prints one 80x24 view that names both interfaces with
// their sending rate, the connection by its token with its rate, and a
// subflow on each interface.
func TestTopOnce(t *testing.T) {
	bin := requireBinary(t, mptcpctlBin, mptcpctlErr)
	tb := twoLinks(t, 20e6)
	if err := tb.StaticEndpoints(mptcp.FlagSubflow); err != nil {
		t.Fatal(err)
	}
	f := startFlow(t, tb.Upload, testbed.FlowConfig{})
	waitSubflows(t, tb, 2)
	token := uploadToken(t, tb)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-n", tb.Laptop.Name, "top", "--once", "--interval", "500ms")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("mptcpctl top --once: %v: %s", err, stderr.String())
	}
	mustSurvive(t, "upload", f)
	view := stdout.String()
	t.Logf("the view:\n%s", view)

	lines := strings.Split(strings.TrimSuffix(view, "\n"), "\n")
	if len(lines) > 24 {
		t.Errorf("%d lines, more than 24", len(lines))
	}
	for _, l := range lines {
		if utf8.RuneCountInString(l) > 80 {
			t.Errorf("wider than 80 columns: %q", l)
		}
	}
	// Rows: "wlan0  up  RX  TX  ADDRESSES", "TOKEN  RATE  N subflows ...",
	// "  wlan0  RATE  rtt ...".
	var linksSending, subflows int
	var connRate float64
	for _, l := range lines {
		fields := strings.Fields(l)
		switch {
		case len(fields) < 4:
		case (fields[0] == "wlan0" || fields[0] == "wwan0") && !strings.HasPrefix(l, " "):
			if fields[1] != "up" {
				t.Errorf("%s is %s, want up", fields[0], fields[1])
			}
			if mbitCell(t, fields[3]) > 0 {
				linksSending++
			}
		case fields[0] == token:
			connRate = mbitCell(t, fields[1])
		case strings.HasPrefix(l, "  wlan0 ") || strings.HasPrefix(l, "  wwan0 "):
			subflows++
		}
	}
	if linksSending == 0 {
		t.Error("neither wlan0 nor wwan0 shows a sending rate")
	}
	if connRate < 1 {
		t.Errorf("connection %s at %.1f Mbit/s, want over 1", token, connRate)
	}
	if subflows != 2 {
		t.Errorf("%d subflows on wlan0 and wwan0, want 2", subflows)
	}
}

// uploadToken is the token of the laptop's one MPTCP connection.
func uploadToken(t *testing.T, tb *testbed.Testbed) string {
	t.Helper()
	c, err := mptcpdiag.Dial(&mptcpdiag.Config{NetNS: tb.Laptop.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conns, err := c.Connections()
	if err != nil {
		t.Fatal(err)
	}
	var tokens []string
	for _, conn := range conns {
		if !conn.Listening() {
			tokens = append(tokens, conn.Info.Token.String())
		}
	}
	if len(tokens) != 1 {
		t.Fatalf("the laptop has the connections %v, want one", tokens)
	}
	return tokens[0]
}

// mbitCell parses a view's Mbit/s cell.
func mbitCell(t *testing.T, cell string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(cell, 64)
	if err != nil {
		t.Fatalf("rate %q: %v", cell, err)
	}
	return v
}
