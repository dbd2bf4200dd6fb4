package policy

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseSSHConfig(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    string
		want  SSHConfig
		warns []string
		err   string
	}{
		{name: "no section", in: "[core]\nlog=null\n"},
		{
			name: "every key",
			in: "[core]\nlog=null\n[ssh]\nlisten=[::]:22, 192.0.2.1:2222\nsshd=/usr/sbin//sshd\n" +
				"sshd-args=-f /etc/ssh/sshd_config  -oClientAliveInterval=30\nmax-connections=100\n" +
				"max-per-source=5\nrate=2.5\nburst=7\n",
			want: SSHConfig{
				Listen: []string{"[::]:22", "192.0.2.1:2222"}, SSHD: "/usr/sbin/sshd",
				SSHDArgs:       []string{"-f", "/etc/ssh/sshd_config", "-oClientAliveInterval=30"},
				MaxConnections: 100, MaxPerSource: 5, Rate: 2.5, Burst: 7,
			},
		},
		{
			name:  "unknown key and empty values",
			in:    "[ssh]\nlisten=\nmax-conections=3\n",
			warns: []string{`c:3: unknown key max-conections in [ssh] ignored (did you mean "max-connections"?)`},
		},
		{
			name: "errors",
			in: "[ssh]\nlisten=22\nsshd=sshd\nmax-connections=0\nmax-per-source=x\nrate=-1\n" +
				"burst=3\nburst=4\n[core]\nlog=null\n",
			err: `c:2: listen: "22" is not host:port (hint: write an IP address and a port, such as 192.0.2.1:22 or [::1]:9257, or :PORT for every address)
c:3: sshd: "sshd" is not an absolute path (hint: sshd refuses to run from a relative path; write /usr/sbin/sshd)
c:4: max-connections: "0" is not a number from 1 to 1048576
c:5: max-per-source: "x" is not a number from 1 to 1048576
c:6: rate: "-1" is not a rate (hint: write new connections per second, such as 10 or 0.5)
c:8: burst given again (first at line 7) (hint: keep one of the two lines)`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, warns, err := ParseConfig("c", []byte(tc.in))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error:\n%v\nwant:\n%s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, c.SSH); diff != "" {
				t.Errorf("[ssh] (-want +got):\n%s", diff)
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
}

func TestLoadSSHConfigOverride(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mptcpd.conf")
	if err := os.WriteFile(path, []byte("[core]\nlog=journal\n[ssh]\nlisten=[::]:2222\nrate=3\nburst=9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, _, err := LoadSSHConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	flags := &SSHConfig{Listen: []string{"127.0.0.1:22"}, Rate: 50, Burst: 1}
	c.Override(flags, func(name string) bool { return name == "listen" || name == "rate" })
	want := SSHConfig{Listen: []string{"127.0.0.1:22"}, Rate: 50, Burst: 9, Log: "journal"}
	if diff := cmp.Diff(want, *c); diff != "" {
		t.Errorf("after Override (-want +got):\n%s", diff)
	}
	if c, _, err := LoadSSHConfig(filepath.Join(t.TempDir(), "absent")); err != nil || c.Log != "stderr" || len(c.Listen) != 0 {
		t.Errorf("missing file: %+v, %v", c, err)
	}
}
