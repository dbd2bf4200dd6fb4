package pm

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
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

	mu    sync.Mutex
	data  storeFile
	dirty bool
}

// OpenStore reads the state file at path; a missing file is an empty
// store. A file that does not parse, or of an unknown version, gives an
// empty store together with an error that Is ErrCorruptStore and names
// the path: the caller logs it and goes on, and the next save replaces
// the file. Any other read error returns no store.
func OpenStore(path string) (*Store, error) {
	st := &Store{path: path, data: storeFile{Version: storeVersion}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
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
	return st, nil
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
	if err := writeAtomic(s.path, append(b, '\n')); err != nil {
		return err
	}
	s.dirty = false
	return nil
}

func writeAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
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
