package pm

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// storeVersion is the format of the state file; a file of another version
// is treated like a corrupt one.
const storeVersion = 1

// ErrCorruptStore is matched (errors.Is) by the error of OpenStore for a
// state file that does not parse or has an unknown version.
var ErrCorruptStore = errors.New("corrupt state file")

// Owned is an endpoint the daemon created or adopted. The kernel's entry
// is ours while it has the same id and address.
type Owned struct {
	ID   mptcp.ID   `json:"id"`
	Addr netip.Addr `json:"addr"`
	Port uint16     `json:"port,omitempty"`
}

// storeFile is the JSON layout of the state file.
type storeFile struct {
	Version   int            `json:"version"`
	Endpoints []Owned        `json:"endpoints"`
	Limits    recordedLimits `json:"limits"`
}

// recordedLimits are the limit values the daemon last set; nil: no record.
type recordedLimits struct {
	Subflows        *uint32 `json:"subflows,omitempty"`
	AddAddrAccepted *uint32 `json:"add_addr_accepted,omitempty"`
}

// Store remembers which endpoints the daemon owns and which limit values
// it set, in a JSON file, so that a restarted daemon (even after kill -9)
// takes up where it left off and never mistakes an administrator's
// endpoint for its own. It is safe for concurrent use.
type Store struct {
	path string

	// durable is false on tmpfs (/run), where fsync does nothing but cost
	// syscalls on the path from an address event to the kernel: the file
	// only has to survive the daemon (rename is atomic), not a reboot.
	durable bool

	mu   sync.Mutex
	data storeFile
	// dirty: the state file is behind the record; compactDue: rewrite it
	// at the next save (after opening a journal or a corrupt file).
	dirty, compactDue bool
	pending           []byte   // journal records not written yet
	wal               *os.File // the journal, once opened; append-only
	walSize           int64    // bytes in the journal
}

// OpenStore reads the state file at path; a missing file is an empty
// store. A state file or journal that does not parse, or a state file of
// an unknown version, gives an empty store together with an error that Is
// ErrCorruptStore and names the file: the caller logs it and goes on, and
// the first save replaces both files. Any other read error returns no
// store.
func OpenStore(path string) (*Store, error) {
	st, err := openStore(path)
	if errors.Is(err, ErrCorruptStore) {
		st = newStore(path)
		st.compactDue = true
	}
	return st, err
}

func newStore(path string) *Store {
	return &Store{path: path, data: storeFile{Version: storeVersion}, durable: !onTmpfs(filepath.Dir(path))}
}

func openStore(path string) (*Store, error) {
	st := newStore(path)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		// A daemon killed before its first save left only a journal.
		return st, st.replay()
	}
	if err != nil {
		return nil, fmt.Errorf("pm: read state: %w", err)
	}
	var f storeFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("pm: %w %s: %v", ErrCorruptStore, path, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("pm: %w %s: data after the JSON object", ErrCorruptStore, path)
	}
	if f.Version != storeVersion {
		return nil, fmt.Errorf("pm: %w %s: version %d, want %d", ErrCorruptStore, path, f.Version, storeVersion)
	}
	for _, o := range f.Endpoints {
		if o.ID == 0 || !o.Addr.IsValid() {
			return nil, fmt.Errorf("pm: %w %s: bad endpoint id %d address %v", ErrCorruptStore, path, o.ID, o.Addr)
		}
	}
	st.data = f
	return st, st.replay()
}

// The journal sits beside the state file: one line per change of the
// record ("own ID ADDR PORT", "forget ID", "limit NAME VALUE"), appended
// in one write per batch, so that the path from an address event to the
// kernel costs one small write instead of rewriting the state file. The
// state file is rewritten (and the journal emptied) only once the journal
// has grown, and at Close: it is the journal's checkpoint.
func (s *Store) journalPath() string { return s.path + ".wal" }

// compactAt is the journal size that makes save rewrite the state file:
// a few hundred records, each a small write, then one rewrite.
const compactAt = 16 << 10

// record queues one journal line: a keyword, then the words append
// adds; the caller holds mu. Appending by hand keeps fmt, cold after the
// daemon idled, off the path from an address event to the kernel.
func (s *Store) record(keyword string, words func([]byte) []byte) {
	s.pending = append(append(s.pending, keyword...), ' ')
	s.pending = append(words(s.pending), '\n')
	s.dirty = true
}

// flush appends the queued records to the journal in one write: before
// the kernel is asked to add an endpoint (write-ahead), and after a pass.
func (s *Store) flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushLocked()
}

func (s *Store) flushLocked() error {
	if len(s.pending) == 0 {
		return nil
	}
	if s.wal == nil {
		open := func() (*os.File, error) {
			return os.OpenFile(s.journalPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		}
		f, err := open()
		if errors.Is(err, fs.ErrNotExist) {
			if err = os.MkdirAll(filepath.Dir(s.path), 0o755); err == nil {
				f, err = open()
			}
		}
		if err != nil {
			return err
		}
		s.wal = f
	}
	n, err := s.wal.Write(s.pending)
	s.walSize += int64(n)
	if err != nil {
		return err
	}
	s.pending = s.pending[:0]
	if s.durable {
		return s.wal.Sync()
	}
	return nil
}

// replay applies a journal left by a daemon that died (or stopped) before
// folding it in. A line cut short (the write never completed) is ignored
// and cut off, so that the next record does not run into it.
func (s *Store) replay() error {
	b, err := os.ReadFile(s.journalPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pm: read state journal: %w", err)
	}
	complete := 0
	for i, line := range bytes.SplitAfter(b, []byte("\n")) {
		if len(line) == 0 || line[len(line)-1] != '\n' {
			break
		}
		if err := s.replayLine(string(line)); err != nil {
			return fmt.Errorf("pm: %w %s line %d: %q: %v", ErrCorruptStore, s.journalPath(), i+1, bytes.TrimSpace(line), err)
		}
		complete += len(line)
	}
	if complete < len(b) {
		if err := os.Truncate(s.journalPath(), int64(complete)); err != nil {
			return fmt.Errorf("pm: cut the unfinished record off the state journal: %w", err)
		}
	}
	s.walSize = int64(complete)
	// Replaying queued the same records again; they are in the file.
	s.pending = s.pending[:0]
	// The first save folds the journal in.
	s.compactDue = complete > 0
	return nil
}

// replayLine applies one journal record.
func (s *Store) replayLine(line string) error {
	f := strings.Fields(line)
	if len(f) == 0 {
		return errors.New("empty record")
	}
	id := func(w string) (mptcp.ID, error) {
		n, err := strconv.ParseUint(w, 10, 8)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("bad endpoint id %q", w)
		}
		return mptcp.ID(n), nil
	}
	switch {
	case f[0] == "own" && len(f) == 4:
		i, err := id(f[1])
		if err != nil {
			return err
		}
		a, err := netip.ParseAddr(f[2])
		if err != nil {
			return err
		}
		port, err := strconv.ParseUint(f[3], 10, 16)
		if err != nil {
			return fmt.Errorf("bad port %q", f[3])
		}
		s.own(mptcp.Endpoint{ID: i, Addr: a, Port: uint16(port)})
	case f[0] == "forget" && len(f) == 2:
		i, err := id(f[1])
		if err != nil {
			return err
		}
		s.forget(i)
	case f[0] == "limit" && len(f) == 3:
		v, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			return fmt.Errorf("bad limit value %q", f[2])
		}
		i := slices.IndexFunc(limitFields[:], func(l limitField) bool { return l.name == f[1] })
		if i < 0 {
			return fmt.Errorf("unknown limit %q", f[1])
		}
		s.setLimit(limitFields[i], uint32(v))
	default:
		return errors.New("not a record")
	}
	return nil
}

// Close folds the journal into the state file and closes it. The store
// must not be used afterwards.
func (s *Store) Close() error {
	err := s.Save()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wal != nil {
		if cerr := s.wal.Close(); err == nil {
			err = cerr
		}
		s.wal = nil
	}
	return err
}

// Path returns the state file's name.
func (s *Store) Path() string { return s.path }

// Endpoints returns the owned endpoints by id.
func (s *Store) Endpoints() []Owned {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.data.Endpoints)
}

// Limits returns the limit values the daemon last set; nil fields have no
// record.
func (s *Store) Limits() mptcp.Limits {
	s.mu.Lock()
	defer s.mu.Unlock()
	var l mptcp.Limits
	if v := s.data.Limits.Subflows; v != nil {
		l.Subflows = new(*v)
	}
	if v := s.data.Limits.AddAddrAccepted; v != nil {
		l.AddAddrAccepted = new(*v)
	}
	return l
}

// owns reports whether e is ours: a record with its id and address.
func (s *Store) owns(e mptcp.Endpoint) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.ContainsFunc(s.data.Endpoints, func(o Owned) bool { return o.ID == e.ID && o.Addr == e.Addr.Unmap() })
}

// reserved reports whether id is recorded, whatever the address.
func (s *Store) reserved(id mptcp.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.ContainsFunc(s.data.Endpoints, func(o Owned) bool { return o.ID == id })
}

// own records e as ours, replacing any record with its id.
func (s *Store) own(e mptcp.Endpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := Owned{ID: e.ID, Addr: e.Addr.Unmap(), Port: e.Port}
	eps := slices.DeleteFunc(s.data.Endpoints, func(x Owned) bool { return x.ID == e.ID })
	i, _ := slices.BinarySearchFunc(eps, o.ID, func(x Owned, id mptcp.ID) int { return cmp.Compare(x.ID, id) })
	s.data.Endpoints = slices.Insert(eps, i, o)
	s.record("own", func(b []byte) []byte {
		b = append(strconv.AppendUint(b, uint64(o.ID), 10), ' ')
		b = append(o.Addr.AppendTo(b), ' ')
		return strconv.AppendUint(b, uint64(o.Port), 10)
	})
}

// forget drops the record with id, if any.
func (s *Store) forget(id mptcp.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.data.Endpoints)
	s.data.Endpoints = slices.DeleteFunc(s.data.Endpoints, func(o Owned) bool { return o.ID == id })
	if len(s.data.Endpoints) != n {
		s.record("forget", func(b []byte) []byte { return strconv.AppendUint(b, uint64(id), 10) })
	}
}

// limit returns the recorded value of one limit.
func (s *Store) limit(which limitField) (uint32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := which.recorded(&s.data.Limits)
	if *p == nil {
		return 0, false
	}
	return **p, true
}

// setLimit records the value the daemon set for one limit.
func (s *Store) setLimit(which limitField, v uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := which.recorded(&s.data.Limits)
	if *p != nil && **p == v {
		return
	}
	*p = &v
	s.record("limit", func(b []byte) []byte {
		return strconv.AppendUint(append(append(b, which.name...), ' '), uint64(v), 10)
	})
}

// Save writes the state file if the record changed since it was last
// written: to a temporary file in the same directory, renamed over the
// old one (synced too, unless on tmpfs), so that a crash leaves the old or
// the new state, never a mix; then it empties the journal. The directory
// is created if needed.
func (s *Store) Save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.compact(); err != nil {
		return fmt.Errorf("pm: save state: %w", err)
	}
	return nil
}

// save ends a reconcile pass: it journals the pass's changes, and folds
// the journal into the state file once it has grown. The error is
// unprefixed, for callers that say where.
func (s *Store) save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.flushLocked(); err != nil {
		return err
	}
	if s.compactDue || s.walSize >= compactAt {
		return s.compact()
	}
	return nil
}

// compact rewrites the state file and empties the journal; the caller
// holds mu.
func (s *Store) compact() error {
	if !s.dirty && !s.compactDue {
		return nil
	}
	b, err := json.MarshalIndent(s.data, "", "\t")
	if err != nil {
		return err
	}
	if err := writeAtomic(s.path, append(b, '\n'), s.durable); err != nil {
		return err
	}
	s.dirty, s.compactDue = false, false
	// The state file now holds everything the journal said, including
	// records still queued.
	s.pending = s.pending[:0]
	s.walSize = 0
	if s.wal != nil {
		return s.wal.Truncate(0) // O_APPEND: the next record goes to offset 0
	}
	if err := os.Truncate(s.journalPath(), 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func writeAtomic(path string, b []byte, durable bool) error {
	// One writer per namespace, so a fixed temporary name is enough and
	// saves the random-name retries of os.CreateTemp.
	dir, tmp := filepath.Dir(path), filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(dir, 0o755); err == nil {
			f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		}
	}
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if !durable {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// StatePath returns the state file for the calling thread's network
// namespace in dir: netns-DEV-INO.json, from the device and inode of
// /proc/thread-self/ns/net, which identify a namespace for as long as it
// exists. Daemons in different namespaces thus never share a file. Call
// it from the thread that runs in the namespace (nl/netns Do locks it).
func StatePath(dir string) (string, error) {
	return statePath(dir, "/proc/thread-self/ns/net")
}

func statePath(dir, nsFile string) (string, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(nsFile, &st); err != nil {
		return "", fmt.Errorf("pm: identify network namespace: stat %s: %w", nsFile, err)
	}
	return filepath.Join(dir, fmt.Sprintf("netns-%d-%d.json", st.Dev, st.Ino)), nil
}

// onTmpfs reports whether dir is on tmpfs (or ramfs); false when unsure.
func onTmpfs(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	return st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC
}
