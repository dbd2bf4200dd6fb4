package relay

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// String is the key in a key file's form: standard base64.
func (k Key) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// ParseKeys reads a key file: one base64 key per line, blank lines and
// '#' comments ignored. A gateway sends with the first key; a relay
// accepts every one, so a key is replaced by adding the new one to the
// relay first, then changing the gateways, then removing the old one.
func ParseKeys(data []byte) ([]Key, error) {
	var keys []Key
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != KeyLen {
			// Never echo the line: it may be a key with a typo.
			return nil, fmt.Errorf("line %d: not a key (want %d bytes in base64, as `mptcpd-relay genkey` prints)", line, KeyLen)
		}
		keys = append(keys, Key(b))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errors.New("no key in it")
	}
	return keys, nil
}

// LoadKeys reads the key file at path, which only its owner may read:
// a key others can read is a key anyone on the host can relay with.
func LoadKeys(path string) ([]Key, error) {
	data, err := ReadPrivateFile(path)
	if err != nil {
		return nil, err
	}
	keys, err := ParseKeys(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, nil
}

// ReadPrivateFile reads a file of secrets (keys, passwords), refusing one
// that others than its owner may read.
func ReadPrivateFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: mode %04o: readable by others than its owner (chmod 600 it)", path, st.Mode().Perm())
	}
	return io.ReadAll(f)
}
