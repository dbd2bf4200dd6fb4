package trace

import (
	"bytes"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/internal/golden"
)

var (
	t0 = time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)
	t1 = t0.Add(100 * time.Millisecond)
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// cmpAddrs compares addresses by value (go-cmp cannot see inside).
var cmpAddrs = cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })

// handover is a few rounds of a laptop losing wlan0's carrier, with a
// subflow of each kind of attribution, IPv6, and text that CSV quotes.
var handover = []Record{
	{Time: t0, Kind: KindLink, IfIndex: 1, Dev: "lo", RxBytes: 0, TxBytes: 0},
	{Time: t0, Kind: KindLink, IfIndex: 2, Dev: "wlan0", RxBytes: 1000, TxBytes: 5_000_000, RxPackets: 20, TxPackets: 3500},
	{Time: t0, Kind: KindLink, IfIndex: 3, Dev: "wwan0", RxBytes: 500, TxBytes: 1500, RxPackets: 9, TxPackets: 12},
	{Time: t0, Kind: KindConn, Token: 0x7ab06eec, Local: ap("10.1.1.2:51482"), Remote: ap("10.3.0.1:5000"),
		RxBytes: 0, TxBytes: 4_900_000, AckedBytes: 4_800_000},
	{Time: t0, Kind: KindSubflow, IfIndex: 2, Dev: "wlan0", Token: 0x7ab06eec, Local: ap("10.1.1.2:51482"), Remote: ap("10.3.0.1:5000"),
		RxBytes: 1, TxBytes: 4_900_000, AckedBytes: 4_800_000},
	{Time: t0, Kind: KindSubflow, Token: 0x7ab06eec, Local: ap("[fd00::2]:41331"), Remote: ap("[fd00::1]:5000"),
		RxBytes: 0, TxBytes: 0, AckedBytes: 0},
	{Time: t0.Add(42 * time.Millisecond), Kind: KindEvent, IfIndex: 2, Dev: "wlan0", Event: EventNoCarrier},
	{Time: t0.Add(43 * time.Millisecond), Kind: KindEvent, IfIndex: 2, Dev: "wlan0", Event: EventAddrRemoved, Detail: "10.1.1.2/24"},
	{Time: t0.Add(50 * time.Millisecond), Kind: KindEvent, Event: EventResync, Detail: `receive: "no buffer space", retrying`},
	{Time: t0.Add(60 * time.Millisecond), Kind: KindEvent, Event: EventNote, Detail: "leave AP1, on 4G"},
	{Time: t1, Kind: KindLink, IfIndex: 2, Dev: "wlan0", RxBytes: 1000, TxBytes: 5_000_000, RxPackets: 20, TxPackets: 3500},
	{Time: t1, Kind: KindLink, IfIndex: 3, Dev: "wwan0", RxBytes: 20_500, TxBytes: 1_251_500, RxPackets: 400, TxPackets: 870},
}

// TestGolden writes the records in each format, compares with the file in
// testdata and reads it back.
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		format Format
		file   string
	}{
		{FormatCSV, "testdata/handover.csv"},
		{FormatJSON, "testdata/handover.jsonl"},
	} {
		t.Run(string(tc.format), func(t *testing.T) {
			var b bytes.Buffer
			w := NewWriter(&b, tc.format)
			if err := w.Write(handover[:4]...); err != nil {
				t.Fatal(err)
			}
			if err := w.Write(handover[4:]...); err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, tc.file, b.Bytes())
			data, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ReadAll(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(handover, got, cmpAddrs); diff != "" {
				t.Errorf("read back (-want +got):\n%s", diff)
			}
		})
	}
}

// TestEmpty: a trace without records is a header, and reads back empty;
// so does an empty file.
func TestEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := NewWriter(&b, FormatCSV).Flush(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "time,kind,") || strings.Count(b.String(), "\n") != 1 {
		t.Errorf("empty CSV trace %q, want the header line alone", b.String())
	}
	for _, in := range []string{b.String(), "", "\n"} {
		got, err := ReadAll(strings.NewReader(in))
		if err != nil || len(got) != 0 {
			t.Errorf("ReadAll(%q) = %v, %v, want no records and no error", in, got, err)
		}
	}
}

// TestReadLenient: columns are found by name, unknown ones ignored; JSON
// lines may be blank.
func TestReadLenient(t *testing.T) {
	want := []Record{{Time: t0, Kind: KindLink, IfIndex: 2, Dev: "wlan0", RxBytes: 7, TxBytes: 9}}
	for name, in := range map[string]string{
		"reordered CSV":  "tx_bytes,future,dev,kind,time,ifindex,rx_bytes\n9,x,wlan0,link,2026-03-14T09:26:53Z,2,7\n",
		"CRLF CSV":       "time,kind,ifindex,dev,rx_bytes,tx_bytes\r\n2026-03-14T09:26:53Z,link,2,wlan0,7,9\r\n",
		"JSON":           "\n{\"future\":[1],\"time\":\"2026-03-14T09:26:53Z\",\"kind\":\"link\",\"ifindex\":2,\"dev\":\"wlan0\",\"rx_bytes\":7,\"tx_bytes\":9}\n\n",
		"JSON, no \\n":   `{"time":"2026-03-14T09:26:53Z","kind":"link","ifindex":2,"dev":"wlan0","rx_bytes":7,"tx_bytes":9}`,
		"zone in time":   "time,kind,ifindex,dev,rx_bytes,tx_bytes\n2026-03-14T10:26:53+01:00,link,2,wlan0,7,9\n",
		"empty is unset": "time,kind,ifindex,dev,rx_bytes,tx_bytes,event\n2026-03-14T09:26:53Z,link,2,wlan0,7,9,\n",
	} {
		got, err := ReadAll(strings.NewReader(in))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if diff := cmp.Diff(want, got, cmpAddrs); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
}

// TestReadErrors: what is not a trace fails, saying where and what.
func TestReadErrors(t *testing.T) {
	const head = "time,kind,ifindex,dev,token,local,remote,rx_bytes,tx_bytes,event\n"
	for _, tc := range []struct{ in, want string }{
		{"a,b\n1,2\n", `trace: header: no "time" column: not a trace`},
		{"time,kind,time\n", `trace: header: column "time" twice`},
		{head + "yesterday,link,2,wlan0,,,,1,2,\n", `trace: line 2: time "yesterday": not an RFC 3339 time`},
		{head + "2026-03-14T09:26:53Z,disk,2,sda,,,,1,2,\n", `trace: line 2: kind "disk": unknown kind`},
		{head + "2026-03-14T09:26:53Z,link,-2,wlan0,,,,1,2,\n", `trace: line 2: ifindex "-2": not positive`},
		{head + "2026-03-14T09:26:53Z,link,2,wlan0,,,,1,-2,\n", `trace: line 2: tx_bytes "-2": invalid syntax`},
		{head + "2026-03-14T09:26:53Z,link,2,wlan0,,,,1,99999999999999999999,\n", `trace: line 2: tx_bytes "99999999999999999999": value out of range`},
		{head + "2026-03-14T09:26:53Z,link,,wlan0,,,,1,2,\n", `trace: line 2: link without ifindex`},
		{head + "2026-03-14T09:26:53Z,conn,,,7ab06eec,10.0.0.1:1,,1,2,\n", `trace: line 2: conn without local and remote addresses`},
		{head + "2026-03-14T09:26:53Z,conn,,,7ab06ee,10.0.0.1:1,10.0.0.2:2,1,2,\n", `trace: line 2: token "7ab06ee": not 8 hex digits`},
		{head + "2026-03-14T09:26:53Z,event,2,wlan0,,,,,,\n", `trace: line 2: event without its name`},
		{head + "2026-03-14T09:26:53Z,event,2,\"wlan\r0\",,,,,,up\n", `trace: line 2: dev "wlan\r0": not printable UTF-8`},
		{head + "2026-03-14T09:26:53Z,link,2,wlan0\n", `trace: record on line 2: wrong number of fields`},
		{"{\"time\":\"2026-03-14T09:26:53Z\",\"kind\":\"link\",\"ifindex\":\"2\"}\n", `trace: line 1: ifindex: "2" is not a non-negative number`},
		{"{\"time\":\"2026-03-14T09:26:53Z\",\"kind\":\"link\",\"ifindex\":2,\"dev\":7}\n", `trace: line 1: dev: 7 is not a string`},
		{"{\"time\":\"2026-03-14T09:26:53Z\",\"kind\":\"link\",\"ifindex\":2}\n{\"time\":1\n", `trace: line 2: unexpected end of JSON input`},
		{"{\"time\":\"2026-03-14T09:26:53Z\",\"kind\":\"link\",\"ifindex\":2.5}\n", `trace: line 1: ifindex "2.5": invalid syntax`},
	} {
		_, err := ReadAll(strings.NewReader(tc.in))
		if err == nil || err.Error() != tc.want {
			t.Errorf("ReadAll(%q):\n got %v\nwant %s", tc.in, err, tc.want)
		}
	}
}

// TestWriteRefuses: a record that would not read back is not written.
func TestWriteRefuses(t *testing.T) {
	for _, tc := range []struct {
		rec  Record
		want string
	}{
		{Record{Kind: KindLink, IfIndex: 1}, "no time"},
		{Record{Time: t0, Kind: "disk"}, `unknown kind "disk"`},
		{Record{Time: t0, Kind: KindLink}, "link without ifindex"},
		{Record{Time: t0, Kind: KindEvent, Event: EventUp, Dev: "a\nb"}, `dev "a\nb": not printable UTF-8`},
		{Record{Time: t0, Kind: KindEvent, Event: EventUp, Detail: "\xff"}, `detail "\xff": not printable UTF-8`},
		{Record{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Kind: KindEvent, Event: EventUp}, "time out of RFC 3339's years"},
	} {
		for _, f := range []Format{FormatCSV, FormatJSON} {
			var b bytes.Buffer
			err := NewWriter(&b, f).Write(tc.rec)
			if err == nil || !strings.HasSuffix(err.Error(), tc.want) {
				t.Errorf("%s: Write(%+v) = %v, want an error ending in %s", f, tc.rec, err, tc.want)
			}
		}
	}
}

// FuzzRead: the reader never panics, and whatever it accepts writes and
// reads back the same in both formats.
func FuzzRead(f *testing.F) {
	for _, file := range []string{"testdata/handover.csv", "testdata/handover.jsonl"} {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("time,kind,ifindex,dev\n2026-03-14T09:26:53Z,event,2,\"a,\"\"b\"\"\"\n"))
	f.Add([]byte(`{"time":"2026-03-14T09:26:53.5+02:00","kind":"subflow","local":"[::1]:1","remote":"1.2.3.4:5","token":"0000000a"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := ReadAll(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, format := range []Format{FormatCSV, FormatJSON} {
			var b bytes.Buffer
			w := NewWriter(&b, format)
			if err := w.Write(recs...); err != nil {
				t.Fatalf("%s: records read cannot be written: %v", format, err)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			again, err := ReadAll(&b)
			if err != nil {
				t.Fatalf("%s: reading what was written: %v\n%s", format, err, b.String())
			}
			if diff := cmp.Diff(recs, again, cmpAddrs); diff != "" {
				t.Fatalf("%s: round trip (-read +again):\n%s", format, diff)
			}
		}
	})
}
