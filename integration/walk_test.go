package integration

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/trace"
	"github.com/mptcpd-go/mptcpd/internal/walk"
)

// TestRoamingWalk takes make demo's walk, its stays shortened but its
// 30 s outage whole, with our mptcpd: the bulk upload and the interactive
// stream survive every step with every byte verified, and both flow again
// within a second of the links' return; after each step the laptop has
// the endpoints the policy wants for the links it has then (through the
// outage, the one it keeps for the live connections), and the data ran
// on the link it should; the trace marks every step, in order, and its
// plot decodes.
//
// Before mptcpd kept endpoints through outages, the interactive stream
// was lost in about one walk in five: the server held its last echoes
// on a subflow the laptop had closed without telling it (pm/outage.go).
func TestRoamingWalk(t *testing.T) {
	bin := requireMptcpd(t)
	dir := shmTempDir(t)
	var out bytes.Buffer
	rep, err := walk.Run(t.Context(), walk.Config{
		Mptcpd: bin, Dir: dir, Out: &out,
		Dwell: 2 * time.Second, BlackZone: time.Second, Outage: walk.DefaultOutage,
	})
	defer func() {
		if t.Failed() {
			t.Logf("the walk said:\n%s", out.String())
			if log, err := os.ReadFile(filepath.Join(dir, "mptcpd.log")); err == nil {
				t.Logf("mptcpd.log:\n%s", log)
			}
		}
	}()
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Bulk.Survived {
		t.Errorf("the bulk upload did not survive: %v", rep.Bulk.Err)
	}
	if !rep.Echo.Survived {
		t.Errorf("the interactive stream did not survive: %v", rep.Echo.Err)
	}

	// Where the data ran, and the endpoints at each step's end; wlan0's
	// address changes with every new AP.
	const onWlan, onWwan, nowhere = "wlan0", "wwan0", ""
	// Sorted.
	backup := "wwan0 subflow backup"
	wlan := "wlan0 subflow"
	for i, want := range []struct {
		on        string
		endpoints []string // the endpoints' "DEV FLAGS"
	}{
		{onWlan, []string{wlan, backup}}, // at AP1
		{onWwan, []string{backup}},       // leave AP1
		{onWlan, []string{wlan, backup}}, // AP2
		{onWwan, []string{backup}},       // leave AP2
		{nowhere, []string{backup}},      // 4G black zone
		{onWwan, []string{backup}},       // out of the zone
		{onWlan, []string{wlan, backup}}, // AP3
		{nowhere, []string{backup}},      // no link at all: kept
		{onWlan, []string{wlan, backup}}, // AP4 and 4G back
	} {
		if i >= len(rep.Steps) {
			t.Fatalf("%d steps reported, want 9", len(rep.Steps))
		}
		s := rep.Steps[i]
		var got []string
		for _, e := range s.Endpoints {
			_, devFlags, _ := strings.Cut(e, " ")
			got = append(got, devFlags)
		}
		slices.Sort(got)
		if !slices.Equal(got, want.endpoints) {
			t.Errorf("%s: endpoints %q, want %q", s.Name, s.Endpoints, want.endpoints)
		}
		wlanTx, wwanTx := s.Tx["wlan0"]/1e6, s.Tx["wwan0"]/1e6
		var ok bool
		switch want.on {
		case onWlan: // 50 Mbit/s
			ok = wlanTx > 25 && wwanTx < wlanTx/5
		case onWwan: // 20 Mbit/s, this one while it comes out of a backed-off retransmission
			ok = wwanTx > 2 && wlanTx < 2
		case nowhere:
			ok = wlanTx < 2 && wwanTx < 2
		}
		if !ok {
			t.Errorf("%s: sent wlan0 %.1f, wwan0 %.1f Mbit/s, want the data on %q", s.Name, wlanTx, wwanTx, want.on)
		}
	}
	if last := rep.Steps[len(rep.Steps)-1]; last.BulkStall > time.Second || last.EchoStall > time.Second {
		t.Errorf("%s: stalls of %v (bulk) and %v (interactive) after the links came back", last.Name, last.BulkStall, last.EchoStall)
	}
	if log, err := os.ReadFile(filepath.Join(dir, "mptcpd.log")); err != nil || !bytes.Contains(log, []byte("deleting the endpoints kept through the outage")) {
		t.Errorf("mptcpd did not say it deleted the endpoints kept through the outage (%v)", err)
	}

	var notes, names []string
	for _, r := range readTraceFile(t, filepath.Join(dir, "walk.csv")) {
		if r.Event == trace.EventNote {
			notes = append(notes, r.Detail)
		}
	}
	for _, s := range rep.Steps {
		names = append(names, s.Name)
	}
	if !slices.Equal(notes, names) {
		t.Errorf("the trace's notes %q, want the steps %q", notes, names)
	}
	img, err := os.Open(filepath.Join(dir, "walk.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if _, err := png.Decode(img); err != nil {
		t.Errorf("walk.png: %v", err)
	}
	if svg, err := os.ReadFile(filepath.Join(dir, "walk.svg")); err != nil || !bytes.Contains(svg, []byte(">leave AP1<")) {
		t.Errorf("walk.svg does not mark the step \"leave AP1\" (%v)", err)
	}
}
