package relay

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseKeys(t *testing.T) {
	k1, k2 := GenerateKey(), GenerateKey()
	keys, err := ParseKeys([]byte("# new key first\n" + k1.String() + "\n\n  " + k2.String() + "  \n"))
	if err != nil || len(keys) != 2 || keys[0] != k1 || keys[1] != k2 {
		t.Fatalf("ParseKeys: %v, %v", keys, err)
	}
	for _, bad := range []string{"", "# only a comment\n", "c2hvcnQ=\n", k1.String() + "x\n"} {
		_, err := ParseKeys([]byte(bad))
		if err == nil {
			t.Errorf("%q: accepted", bad)
		} else if strings.Contains(err.Error(), k1.String()) {
			t.Errorf("%q: the error shows the key: %v", bad, err)
		}
	}
}

func TestLoadKeysMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, []byte(GenerateKey().String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeys(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key: %v", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if keys, err := LoadKeys(path); err != nil || len(keys) != 1 {
		t.Errorf("LoadKeys: %v, %v", keys, err)
	}
}
