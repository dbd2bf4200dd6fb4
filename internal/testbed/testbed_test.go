package testbed

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestShapeTbfArgs(t *testing.T) {
	for _, tc := range []struct {
		shape Shape
		want  string
	}{
		{Shape{Rate: 50e6}, "tbf rate 50000000bit burst 62500 latency 20000us"},
		// Slow links still get a bucket that holds a GSO burst.
		{Shape{Rate: 1e6}, "tbf rate 1000000bit burst 16384 latency 20000us"},
		{Shape{Rate: 20e6, Burst: 30000, Latency: 5 * time.Millisecond}, "tbf rate 20000000bit burst 30000 latency 5000us"},
	} {
		if got := strings.Join(tc.shape.tbfArgs(), " "); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.shape, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	links := func(names ...string) []LinkConfig {
		var l []LinkConfig
		for _, n := range names {
			l = append(l, LinkConfig{Name: n})
		}
		return l
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"two links", Config{Links: links("wlan0", "wwan0")}, true},
		{"several server addresses", Config{Links: links("eth0"), ServerAddrs: 3}, true},
		{"no links", Config{}, false},
		{"duplicate", Config{Links: links("wlan0", "wlan0")}, false},
		{"empty name", Config{Links: links("")}, false},
		{"lo", Config{Links: links("lo")}, false},
		// The server's side is "via-" + the name: 15 bytes at most.
		{"11 bytes", Config{Links: links("wlan0123456")}, true},
		{"12 bytes", Config{Links: links("wlan01234567")}, false},
		{"too many server addresses", Config{Links: links("eth0"), ServerAddrs: 255}, false},
	} {
		if err := tc.cfg.validate(); (err == nil) != tc.ok {
			t.Errorf("%s: validate = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestAddressPlan(t *testing.T) {
	b := &Testbed{}
	l := &Link{tb: b, index: 1, sub: 7}
	got := []string{l.Prefix().String(), l.Gateway().String(), l.apServerAddr().String(), l.serverAddr().String()}
	want := []string{"10.1.7.2/24", "10.1.7.1", "10.2.2.1", "10.2.2.2"}
	if !slices.Equal(got, want) {
		t.Errorf("link 1 on subnet 7: %v, want %v", got, want)
	}
}
