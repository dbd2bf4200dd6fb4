package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

func TestParseConfig(t *testing.T) {
	def := DefaultConfig()
	with := func(f func(c *Config)) *Config {
		c := DefaultConfig()
		c.Source = "c"
		f(c)
		return c
	}
	for _, tc := range []struct {
		name  string
		in    string
		want  *Config
		warns []string
		err   string
	}{
		{name: "empty", in: "", want: with(func(*Config) {})},
		{
			name: "every key",
			in: "# comment\n\n[core]\n  log = journal  \nplugin-dir=/usr/lib/mptcpd\npath-manager=sspi\r\n" +
				"addr-flags=subflow, backup\nnotify-flags=existing,check_route\nload-plugins=addr_adv,,sspi\n" +
				"policy-file=/etc/mptcpd//policy\nstate-dir=/var/lib/m\nremove-on-exit=true\nresync-interval=1m30s\n" +
				"set-path-manager=yes\ncontrol-group=mptcp-admin\nmetrics-listen=127.0.0.1:9257\n",
			want: with(func(c *Config) {
				c.Log, c.PluginDir, c.PathManager = "journal", "/usr/lib/mptcpd", "sspi"
				c.AddrFlags = mptcp.FlagSubflow | mptcp.FlagBackup
				c.NotifyFlags = NotifyExisting | NotifyCheckRoute
				c.LoadPlugins = []string{"addr_adv", "sspi"}
				c.PolicyFile, c.StateDir, c.RemoveOnExit, c.ResyncInterval = "/etc/mptcpd/policy", "/var/lib/m", true, 90*time.Second
				c.SetPathManager, c.ControlGroup, c.MetricsListen = true, "mptcp-admin", "127.0.0.1:9257"
				c.Set = KeyLog | KeyPluginDir | KeyPathManager | KeyAddrFlags | KeyNotifyFlags | KeyLoadPlugins |
					KeyPolicyFile | KeyStateDir | KeyRemoveOnExit | KeyResyncInterval | KeySetPathManager | KeyControlGroup |
					KeyMetricsListen
			}),
		},
		{
			name: "empty values keep defaults",
			in:   "[core]\nlog=\naddr-flags=\nnotify-flags=\nresync-interval=\n",
			want: with(func(*Config) {}),
		},
		{
			name: "unknown key, section and existing",
			in:   "[core]\nlog=null\nadr-flags=subflow\nfoo=bar\nnotify-flags=skip_loopback\n[Core]\nlog=x\n[extra]\n",
			want: with(func(c *Config) { c.Log, c.NotifyFlags, c.Set = "null", NotifySkipLoopback, KeyLog|KeyNotifyFlags }),
			warns: []string{
				`c:3: unknown key adr-flags ignored (did you mean "addr-flags"?)`,
				`c:4: unknown key foo ignored`,
				`c:5: notify-flags without existing: mptcpd-go programs existing addresses anyway, because the endpoint table follows the current state`,
				`c:6: unknown section [Core]: its keys are ignored (did you mean "core"?)`,
				`c:8: unknown section [extra]: its keys are ignored`,
			},
		},
		{
			name: "errors",
			in: "log=stderr\n[core\n[core]\nlog=stdout\naddr-flags=signal,fullmesh\nnotify-flags=existing,skip-loopback\n" +
				"path-manager\nresync-interval=500ms\nresync-interval=1x\nstate-dir=run/m\nremove-on-exit=maybe\n" +
				"policy-file=etc/p # mine\n=x\n",
			err: `c:1: key log before any section (hint: put it under [core])
c:2: malformed section header "[core" (hint: write [core])
c:4: log: unknown log destination "stdout" (hint: want one of stderr, syslog, journal, null)
c:5: addr-flags: signal and fullmesh cannot be combined (hint: the kernel refuses the pair (EINVAL); fullmesh goes with subflow)
c:6: notify-flags: unknown notify flag "skip-loopback" (hint: did you mean "skip_loopback"?)
c:7: expected key=value, [section] or # comment, not "path-manager"
c:8: resync-interval: resync-interval 500ms is shorter than 1s (hint: the resync is a safety net behind the event stream; 30s is plenty)
c:9: resync-interval given again (first at line 8) (hint: keep one of the two lines)
c:10: state-dir: "run/m" is not an absolute path (hint: the daemon does not run in the directory you do; write /...)
c:11: remove-on-exit: "maybe" is not yes or no
c:12: too many errors; stopping here`,
		},
		{
			name: "path-health",
			in:   "[core]\npath-health=50ms\n",
			want: with(func(c *Config) { c.PathHealth, c.Set = 50*time.Millisecond, KeyPathHealth }),
		},
		{
			name: "path-health off",
			in:   "[core]\npath-health=off\n",
			want: with(func(c *Config) { c.PathHealth, c.Set = 0, KeyPathHealth }),
		},
		{
			name: "path-health out of range",
			in:   "[core]\npath-health=1ms\n",
			err:  `c:2: path-health: path-health 1ms is outside 10ms..5s (hint: write how often to look at the subflows, such as 100ms, or off)`,
		},
		{
			name: "path-health not a duration",
			in:   "[core]\npath-health=never\n",
			err:  `c:2: path-health: "never" is not a duration or off (hint: write how often to look at the subflows, such as 100ms, or off)`,
		},
		{
			name: "outage-hold",
			in:   "[core]\noutage-hold=5s\n",
			want: with(func(c *Config) { c.OutageHold, c.Set = 5*time.Second, KeyOutageHold }),
		},
		{
			name: "outage-hold off",
			in:   "[core]\noutage-hold=off\n",
			want: with(func(c *Config) { c.OutageHold, c.Set = 0, KeyOutageHold }),
		},
		{
			name: "outage-hold out of range",
			in:   "[core]\noutage-hold=2m\n",
			err:  `c:2: outage-hold: outage-hold 2m0s is outside 100ms..1m0s (hint: write how long to wait for new subflows after an outage, such as 2s, or off)`,
		},
		{
			name: "comment after a value",
			in:   "[core]\naddr-flags=subflow # the default\n",
			err:  `c:2: addr-flags: unknown flag "subflow # the default" (hint: a comment must be on a line of its own)`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, warns, err := ParseConfig("c", []byte(tc.in))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error:\n%v\nwant:\n%s", err, tc.err)
				}
				if c != nil {
					t.Errorf("config %+v returned with an error", c)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, c); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
			var got []string
			for _, w := range warns {
				got = append(got, w.String())
			}
			if diff := cmp.Diff(tc.warns, got); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
	if def.Source != "built-in" || def.Set != 0 {
		t.Errorf("DefaultConfig = %+v", def)
	}
}

func TestControlGroup(t *testing.T) {
	for _, tt := range []struct {
		value string
		ok    bool
	}{
		{"mptcpd", true},
		{"_admin", true},
		{"net-admins.2", true},
		{"machine$", true},
		{"0", true},
		{"1000", true},
		{"2147483647", true},
		{"2147483648", false}, // beyond gid_t's signed range
		{"-1", false},
		{"1abc", false},
		{"adm in", false},
		{"$", false},
		{"a$b", false},
		{"root,adm", false},
		{strings.Repeat("g", 33), false},
	} {
		c, _, err := ParseConfig("c", []byte("[core]\ncontrol-group="+tt.value+"\n"))
		switch {
		case tt.ok && (err != nil || c.ControlGroup != tt.value || c.Set != KeyControlGroup):
			t.Errorf("control-group=%s: config %+v, error %v; want it accepted", tt.value, c, err)
		case !tt.ok && (err == nil || !strings.Contains(err.Error(), "c:2: control-group: ") || !strings.Contains(err.Error(), "is not a group name or number")):
			t.Errorf("control-group=%s: error %v; want it refused", tt.value, err)
		}
	}
}

func TestMetricsListen(t *testing.T) {
	const hint = " (hint: write an IP address and a port, such as 192.0.2.1:22 or [::1]:9257, or :PORT for every address)"
	for _, tt := range []struct {
		value string
		err   string // after "c:2: metrics-listen: "; "" when accepted
	}{
		{"127.0.0.1:9257", ""},
		{"[::1]:9257", ""},
		{"[fe80::1%eth0]:9257", ""},
		{":9257", ""},
		{"0.0.0.0:65535", ""},
		{"127.0.0.1", `"127.0.0.1" is not host:port`},
		{"::1:9257", `"::1:9257" is not host:port`},
		{"127.0.0.1:", `"127.0.0.1:": port "" is not a number from 1 to 65535`},
		{"127.0.0.1:0", `"127.0.0.1:0": port "0" is not a number from 1 to 65535`},
		{"127.0.0.1:65536", `"127.0.0.1:65536": port "65536" is not a number from 1 to 65535`},
		{"127.0.0.1:http", `"127.0.0.1:http": port "http" is not a number from 1 to 65535`},
		{"localhost:9257", `"localhost:9257": "localhost" is not an IP address`},
		{"10.0.0.256:9257", `"10.0.0.256:9257": "10.0.0.256" is not an IP address`},
	} {
		c, _, err := ParseConfig("c", []byte("[core]\nmetrics-listen="+tt.value+"\n"))
		switch {
		case tt.err == "" && (err != nil || c.MetricsListen != tt.value || c.Set != KeyMetricsListen):
			t.Errorf("metrics-listen=%s: config %+v, error %v; want it accepted", tt.value, c, err)
		case tt.err != "" && errText(err) != "c:2: metrics-listen: "+tt.err+hint:
			t.Errorf("metrics-listen=%s: error\n%v\nwant\nc:2: metrics-listen: %s%s", tt.value, err, tt.err, hint)
		}
		if got, want := errText(CheckListenAddr(tt.value)), tt.err; want != "" && got != want+hint || want == "" && got != "" {
			t.Errorf("CheckListenAddr(%q) = %q, want %q", tt.value, got, want)
		}
	}
}

func TestConfigWarningsBounded(t *testing.T) {
	_, warns, err := ParseConfig("c", []byte("[core]\n"+strings.Repeat("x=1\n", 50)))
	if err != nil || len(warns) != maxErrors+1 || warns[maxErrors].String() != "c:12: more warnings not shown" {
		t.Errorf("%d warnings (last %v), error %v; want %d", len(warns), warns[len(warns)-1], err, maxErrors+1)
	}
}

// Debian's mptcpd package ships this file as /etc/mptcpd/mptcpd.conf.
func TestDebianConfig(t *testing.T) {
	c, warns, err := LoadConfig("testdata/debian-mptcpd.conf")
	if err != nil || len(warns) != 0 {
		t.Fatalf("LoadConfig: %v, warnings %v", err, warns)
	}
	if c.Log != "stderr" || c.PluginDir != "/usr/lib/x86_64-linux-gnu/mptcpd" || c.PathManager != "addr_adv" ||
		c.Set != KeyLog|KeyPluginDir|KeyPathManager || !c.InKernelPM() {
		t.Errorf("config = %+v", c)
	}
	if c.BaseSettings() != DefaultConfig().BaseSettings() {
		t.Errorf("BaseSettings = %+v, want the defaults", c.BaseSettings())
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	c, warns, err := LoadConfig(filepath.Join(dir, "missing.conf"))
	if err != nil || len(warns) != 0 || c.Source != "built-in" {
		t.Errorf("missing file: %+v, %v, %v; want the defaults", c, warns, err)
	}
	path := filepath.Join(dir, "mptcpd.conf")
	if err := os.WriteFile(path, []byte("[core]\nlog=null\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, _, err := LoadConfig(path); err != nil || c.Log != "null" || c.Source != path {
		t.Errorf("LoadConfig = %+v, %v", c, err)
	}
	if err := os.Chmod(path, 0o646); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "chmod o-w") {
		t.Errorf("world-writable file: error %v", err)
	}
}

func TestBaseSettings(t *testing.T) {
	def := Settings{
		SkipLoopback: true, SkipLinkLocal: true,
		Subflows: Limit{Mode: LimitAuto}, AddAddrAccepted: Limit{Mode: LimitAuto},
		RouteTableBase: 27000, RulePriority: 27000,
	}
	for _, tc := range []struct {
		notify                          string // "-": key absent
		loopback, linkLocal, checkRoute bool
	}{
		{"-", true, true, false},
		{"existing", false, false, false},
		{"existing,skip_loopback", true, false, false},
		{"existing,skip_link_local,check_route", false, true, true},
	} {
		in := "[core]\n"
		if tc.notify != "-" {
			in += "notify-flags=" + tc.notify + "\n"
		}
		c, _, err := ParseConfig("c", []byte(in))
		if err != nil {
			t.Fatal(err)
		}
		want := def
		want.SkipLoopback, want.SkipLinkLocal, want.CheckRoute = tc.loopback, tc.linkLocal, tc.checkRoute
		if got := c.BaseSettings(); got != want {
			t.Errorf("notify-flags %s: BaseSettings = %+v, want %+v", tc.notify, got, want)
		}
	}
}

func TestConfigPolicy(t *testing.T) {
	c := DefaultConfig()
	c.AddrFlags = mptcp.FlagSignal
	p, err := c.Policy()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Default(c.BaseSettings(), mptcp.FlagSignal), p, equalPolicy); diff != "" {
		t.Errorf("built-in policy (-want +got):\n%s", diff)
	}
	c.PolicyFile = filepath.Join(t.TempDir(), "policy")
	if err := os.WriteFile(c.PolicyFile, []byte("match\n    flags backup\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err = c.Policy()
	if err != nil || p.Source != c.PolicyFile || len(p.Rules) != 1 || p.Rules[0].Flags != mptcp.FlagBackup {
		t.Errorf("policy file: %+v, %v", p, err)
	}
}

func TestInKernelPM(t *testing.T) {
	for pm, want := range map[string]bool{"": true, "addr_adv": true, "sspi": false} {
		if got := (&Config{PathManager: pm}).InKernelPM(); got != want {
			t.Errorf("InKernelPM(%q) = %v, want %v", pm, got, want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want mptcp.Flags
		err  string
	}{
		{"", 0, ""},
		{"subflow", mptcp.FlagSubflow, ""},
		{" signal , backup ", mptcp.FlagSignal | mptcp.FlagBackup, ""},
		{"subflow,fullmesh,backup", mptcp.FlagSubflow | mptcp.FlagFullmesh | mptcp.FlagBackup, ""},
		{"fullmesh,signal", 0, "signal and fullmesh cannot be combined (hint: the kernel refuses the pair (EINVAL); fullmesh goes with subflow)"},
		{"subflow,subflow", 0, "subflow given twice"},
		{"implicit", 0, "implicit cannot be configured (hint: the kernel marks the addresses it uses on its own implicit)"},
		{"sub", 0, `unknown flag "sub" (hint: want one of subflow, signal, backup, fullmesh)`},
	} {
		got, err := ParseAddrFlags(tc.in)
		if errText(err) != tc.err || got != tc.want {
			t.Errorf("ParseAddrFlags(%q) = %v, %q; want %v, %q", tc.in, got, errText(err), tc.want, tc.err)
		}
	}
	for _, tc := range []struct {
		in   string
		want NotifyFlags
		err  string
	}{
		{"", 0, ""},
		{"existing,skip_link_local,skip_loopback,check_route", NotifyExisting | NotifySkipLinkLocal | NotifySkipLoopback | NotifyCheckRoute, ""},
		{"check_route", NotifyCheckRoute, ""},
		{"checkroute", 0, `unknown notify flag "checkroute" (hint: did you mean "check_route"?)`},
		{"existing,existing", 0, "existing given twice"},
	} {
		got, err := ParseNotifyFlags(tc.in)
		if errText(err) != tc.err || got != tc.want {
			t.Errorf("ParseNotifyFlags(%q) = %v, %q; want %v, %q", tc.in, got, errText(err), tc.want, tc.err)
		}
		if err == nil && got.String() != strings.Join(splitList(tc.in), ",") {
			t.Errorf("NotifyFlags(%q).String() = %q", tc.in, got.String())
		}
	}
}

func TestKeyString(t *testing.T) {
	if got := (KeyAddrFlags | KeyResyncInterval).String(); got != "addr-flags,resync-interval" {
		t.Errorf("Key.String = %q", got)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
