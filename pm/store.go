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

	mu    sync.Mutex
	data  storeFile
	dirty bool
	wal   *os.File // the journal, once opened; append-only
}

// OpenStore reads the state file at path; a missing file is an empty
// store. A file that does not parse, or of an unknown version, gives an
// empty store together with an error that Is ErrCorruptStore and names
// the path: the caller logs it and goes on, and the next save replaces
// the file. Any other read error returns no store.
func OpenStore(path string) (*Store, error) {
	st := &Store{path: path, data: storeFile{Version: storeVersion}, durable: !onTmpfs(filepath.Dir(path))}
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
		return st, fmt.Errorf("pm: %w %s: %v", ErrCorruptStore, path, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return st, fmt.Errorf("pm: %w %s: data after the JSON object", ErrCorruptStore, path)
	}
	if f.Version != storeVersion {
		return st, fmt.Errorf("pm: %w %s: version %d, want %d", ErrCorruptStore, path, f.Version, storeVersion)
	}
	for _, o := range f.Endpoints {
		if o.ID == 0 || !o.Addr.IsValid() {
			return st, fmt.Errorf("pm: %w %s: bad endpoint id %d address %v", ErrCorruptStore, path, o.ID, o.Addr)
		}
	}
	st.data = f
	if err := st.replay(); err != nil {
		return st, err
	}
	return st, nil
}

// The write-ahead journal sits beside the state file: one line per
// endpoint about to be added ("own ID ADDR PORT"), appended in a single
// write before the kernel is asked, so that the path from an address
// event to the kernel costs one small write instead of rewriting the
// state file. save folds it into the state file and empties it.
func (s *Store) journalPath() string { return s.path + ".wal" }

// intend records, before they are added, endpoints the daemon is about to
// create. The journal stays open between calls: one write(2) per batch.
func (s *Store) intend(eps []Owned) error {
	var b []byte
	for _, o := range eps {
		b = fmt.Appendf(b, "own %d %s %d\n", o.ID, o.Addr, o.Port)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
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
	if _, err := s.wal.Write(b); err != nil {
		return err
	}
	if s.durable {
		return s.wal.Sync()
	}
	return nil
}

// replay applies a journal left by a daemon that died before folding it
// in. A line cut short (the write never completed) is ignored and cut
// off, so that the next record does not run into it.
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
		var (
			id   uint8
			addr string
			port uint16
		)
		n, err := fmt.Sscanf(string(line), "own %d %s %d\n", &id, &addr, &port)
		a, aerr := netip.ParseAddr(addr)
		if err != nil || n != 3 || aerr != nil || id == 0 {
			return fmt.Errorf("pm: %w %s line %d: %q", ErrCorruptStore, s.journalPath(), i+1, bytes.TrimSpace(line))
		}
		s.own(mptcp.Endpoint{ID: mptcp.ID(id), Addr: a, Port: port})
		complete += len(line)
	}
	if complete < len(b) {
		if err := os.Truncate(s.journalPath(), int64(complete)); err != nil {
			return fmt.Errorf("pm: cut the unfinished record off the state journal: %w", err)
		}
	}
	return nil
}

// Close closes the journal. The store must not be used afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wal == nil {
		return nil
	}
	err := s.wal.Close()
	s.wal = nil
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
	s.dirty = true
}

// forget drops the record with id, if any.
func (s *Store) forget(id mptcp.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.data.Endpoints)
	s.data.Endpoints = slices.DeleteFunc(s.data.Endpoints, func(o Owned) bool { return o.ID == id })
	s.dirty = s.dirty || len(s.data.Endpoints) != n
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
	s.dirty = true
}

// Save writes the state if it changed since the last save: to a
// temporary file in the same directory, synced, renamed over the old
// one, and the directory synced, so that a crash leaves the old or the
// new state, never a mix. The directory is created if needed.
func (s *Store) Save() error {
	if err := s.save(); err != nil {
		return fmt.Errorf("pm: save state: %w", err)
	}
	return nil
}

// save is Save with the error unprefixed, for callers that say where.
func (s *Store) save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.dirty {
		return nil
	}
	b, err := json.MarshalIndent(s.data, "", "\t")
	if err != nil {
		return err
	}
	if err := writeAtomic(s.path, append(b, '\n'), s.durable); err != nil {
		return err
	}
	s.dirty = false
	// The state file now holds everything the journal said.
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
