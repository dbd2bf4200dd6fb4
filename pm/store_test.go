package pm

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

func TestStoreRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "state.json")
	st, err := OpenStore(path)
	if err != nil {
		t.Fatalf("OpenStore of a missing file: %v", err)
	}
	st.own(mptcp.Endpoint{ID: 3, Addr: ip("2001:db8::1")})
	st.own(mptcp.Endpoint{ID: 1, Addr: ip("::ffff:192.0.2.1"), Port: 7000})
	st.own(mptcp.Endpoint{ID: 2, Addr: ip("192.0.2.2")})
	st.forget(2)
	st.setLimit(limitFields[0], 4)
	if err := st.Save(); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("state directory holds %d files, want only the state (no temporary left)", len(entries))
	}

	again, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []Owned{{ID: 1, Addr: ip("192.0.2.1"), Port: 7000}, {ID: 3, Addr: ip("2001:db8::1")}}
	if diff := cmp.Diff(want, again.Endpoints(), cmp.Comparer(func(a, b Owned) bool { return a == b })); diff != "" {
		t.Errorf("unexpected endpoints after reopening (-want +got):\n%s", diff)
	}
	l := again.Limits()
	if l.Subflows == nil || *l.Subflows != 4 || l.AddAddrAccepted != nil {
		t.Errorf("limits after reopening: %+v, want subflows 4 only", l)
	}
	if !again.owns(mptcp.Endpoint{ID: 1, Addr: ip("192.0.2.1")}) || again.owns(mptcp.Endpoint{ID: 1, Addr: ip("192.0.2.9")}) {
		t.Error("owns must need the same id and address")
	}
}

func TestStoreSavesOnlyChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	st, _ := OpenStore(path)
	if err := st.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an unchanged store wrote its file: %v", err)
	}
	st.setLimit(limitFields[1], 0)
	if err := st.Save(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	st.setLimit(limitFields[1], 0) // the same value again
	st.forget(9)                   // nothing to forget
	if err := st.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a store with no change wrote its file: %v", err)
	}
}

func TestStoreCorrupt(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"not JSON", "{\"version\":1,", "unexpected EOF"},
		{"unknown version", `{"version":2,"endpoints":[]}`, "version 2, want 1"},
		{"no version", `{"endpoints":[]}`, "version 0, want 1"},
		{"unknown field", `{"version":1,"owner":"x"}`, "unknown field"},
		{"trailing data", `{"version":1}{}`, "data after the JSON object"},
		{"bad address", `{"version":1,"endpoints":[{"id":1,"addr":"300.1.1.1"}]}`, "300.1.1.1"},
		{"id 0", `{"version":1,"endpoints":[{"id":0,"addr":"192.0.2.1"}]}`, "bad endpoint id 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(path, []byte(tt.body), 0o600); err != nil {
				t.Fatal(err)
			}
			st, err := OpenStore(path)
			if !errors.Is(err, ErrCorruptStore) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v: want ErrCorruptStore naming %s and saying %q", err, path, tt.want)
			}
			if st == nil || len(st.Endpoints()) != 0 {
				t.Fatalf("store %v: want an empty one", st)
			}
			st.own(mptcp.Endpoint{ID: 1, Addr: ip("192.0.2.1")})
			if err := st.Save(); err != nil {
				t.Fatal(err)
			}
			if _, err := OpenStore(path); err != nil {
				t.Errorf("the next save did not replace the corrupt file: %v", err)
			}
		})
	}
}

func TestStoreUnreadable(t *testing.T) {
	dir := t.TempDir() // a directory where the file should be: read fails
	if _, err := OpenStore(dir); err == nil || errors.Is(err, ErrCorruptStore) {
		t.Errorf("OpenStore(directory): %v, want a read error", err)
	}
}

func TestStatePath(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, f := range []string{a, b} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pa, err := statePath("/run/x", a)
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := statePath("/run/x", b)
	pa2, _ := statePath("/run/x", a)
	if pa == pb || pa != pa2 {
		t.Errorf("paths %s, %s, %s: want one per file, stable", pa, pb, pa2)
	}
	if filepath.Dir(pa) != "/run/x" || !strings.HasPrefix(filepath.Base(pa), "netns-") || !strings.HasSuffix(pa, ".json") {
		t.Errorf("path %s: want /run/x/netns-DEV-INO.json", pa)
	}
	if _, err := statePath("/run/x", filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing namespace file: %v, want an error naming it", err)
	}
	if _, err := os.Stat("/proc/thread-self/ns/net"); err == nil {
		if _, err := StatePath(dir); err != nil {
			t.Errorf("StatePath: %v", err)
		}
	}
}

func TestStoreJournal(t *testing.T) {
	path := filepath.Join(stateDir(t), "s.json")
	st, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	intents := []Owned{{ID: 7, Addr: netip.MustParseAddr("192.0.2.7")}, {ID: 9, Addr: netip.MustParseAddr("2001:db8::9"), Port: 4000}}
	for _, o := range intents {
		st.own(mptcp.Endpoint{ID: o.ID, Addr: o.Addr, Port: o.Port})
	}
	st.own(mptcp.Endpoint{ID: 8, Addr: netip.MustParseAddr("192.0.2.8")})
	st.forget(8)
	st.setLimit(limitFields[0], 5)
	// A pass's end journals its changes; the state file waits.
	if err := st.save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file written by a small pass: %v", err)
	}
	// A daemon killed here, mid-way through a record.
	f, err := os.OpenFile(path+".wal", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("own 11 192.0.2."); err != nil {
		t.Fatal(err)
	}
	f.Close()

	back, err := OpenStore(path)
	if err != nil {
		t.Fatalf("reopening with a journal: %v", err)
	}
	if got := back.Endpoints(); !slices.Equal(got, intents) {
		t.Errorf("replayed %v, want %v (the cut-short record ignored)", got, intents)
	}
	if l := back.Limits(); l.Subflows == nil || *l.Subflows != 5 || l.AddAddrAccepted != nil {
		t.Errorf("replayed limits %+v, want subflows 5", l)
	}
	// The cut-short record is gone, so a new one does not run into it.
	back.own(mptcp.Endpoint{ID: 12, Addr: netip.MustParseAddr("192.0.2.12")})
	if err := back.flush(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path + ".wal"); err != nil || !strings.HasSuffix(string(b), "limit subflows 5\nown 12 192.0.2.12 0\n") {
		t.Errorf("journal after a record following a cut-short one: %q, %v", b, err)
	}
	back.forget(12)
	// The first save after a replay folds the journal in and empties it.
	if err := back.save(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path + ".wal"); err != nil || len(b) != 0 {
		t.Errorf("journal after save: %q, %v; want empty", b, err)
	}
	again, err := OpenStore(path)
	if err != nil || !slices.Equal(again.Endpoints(), intents) {
		t.Errorf("after the save: %v, %v; want %v", again.Endpoints(), err, intents)
	}
}

// A journal grows to compactAt before the state file is rewritten.
func TestStoreCompacts(t *testing.T) {
	path := filepath.Join(stateDir(t), "s.json")
	st, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := mptcp.Endpoint{ID: 1, Addr: netip.MustParseAddr("192.0.2.1")}
	passes := 0
	for {
		st.own(e)
		st.forget(e.ID)
		if err := st.save(); err != nil {
			t.Fatal(err)
		}
		passes++
		if _, err := os.Stat(path); err == nil {
			break
		}
		if passes > compactAt {
			t.Fatalf("no state file after %d passes", passes)
		}
	}
	if per := len("own 1 192.0.2.1 0\nforget 1\n"); passes != (compactAt+per-1)/per {
		t.Errorf("state file written after %d passes, want %d (a %d-byte journal)", passes, (compactAt+per-1)/per, compactAt)
	}
	if b, err := os.ReadFile(path + ".wal"); err != nil || len(b) != 0 {
		t.Errorf("journal after compaction: %d bytes, %v; want empty", len(b), err)
	}
}

func TestStoreBadJournal(t *testing.T) {
	for _, tt := range []struct{ journal, want string }{
		{"own 300 192.0.2.1 0\n", `line 1: "own 300 192.0.2.1 0": bad endpoint id "300"`},
		{"own 1 192.0.2.1 0\nforget x\n", `line 2: "forget x": bad endpoint id "x"`},
		{"own 1 192.0.2.300 0\n", "192.0.2.300"},
		{"own 1 192.0.2.1 70000\n", `bad port "70000"`},
		{"limit subflows -1\n", `bad limit value "-1"`},
		{"limit nonsense 1\n", `unknown limit "nonsense"`},
		{"delete 1\n", "not a record"},
		{"\n", "empty record"},
	} {
		path := filepath.Join(stateDir(t), "s.json")
		if err := os.WriteFile(path+".wal", []byte(tt.journal), 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := OpenStore(path)
		if !errors.Is(err, ErrCorruptStore) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path+".wal") {
			t.Errorf("journal %q: %v, want ErrCorruptStore naming the file and saying %q", tt.journal, err, tt.want)
			continue
		}
		// What a broken journal said is not trusted, and the first save
		// starts both files afresh.
		if len(st.Endpoints()) != 0 {
			t.Errorf("journal %q: store %v, want empty", tt.journal, st.Endpoints())
		}
		if err := st.save(); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenStore(path); err != nil {
			t.Errorf("journal %q: after the first save: %v", tt.journal, err)
		}
	}
}
