package ctl

import (
	"bytes"
	"strconv"
)

// jsonWriter writes JSON the way iproute2's json_writer.c does, so that
// `-j` and `-j -p` output match ip byte for byte: keys in call order,
// compact by default, and in pretty mode a 4-space indent, "[ " and " ]"
// around arrays and "},{" between array elements. Only the escapes
// json_writer knows are applied (\t \n \r \f \b \\ \"); other bytes pass
// through, as they do in ip.
type jsonWriter struct {
	b      *bytes.Buffer
	pretty bool
	depth  int
	sep    byte // pending separator: 0 at the start of a container, else ','
}

func newJSONWriter(b *bytes.Buffer, pretty bool) *jsonWriter {
	return &jsonWriter{b: b, pretty: pretty}
}

func (w *jsonWriter) eol() {
	if !w.pretty {
		return
	}
	w.b.WriteByte('\n')
	for i := 0; i < w.depth; i++ {
		w.b.WriteString("    ")
	}
}

// eor emits the separator owed before the next value.
func (w *jsonWriter) eor() {
	if w.sep != 0 {
		w.b.WriteByte(w.sep)
	}
	w.sep = ','
}

func (w *jsonWriter) begin(c byte) {
	w.eor()
	w.b.WriteByte(c)
	w.depth++
	w.sep = 0
}

func (w *jsonWriter) end(c byte) {
	w.depth--
	if w.sep != 0 {
		w.eol()
	}
	w.b.WriteByte(c)
	w.sep = ','
}

func (w *jsonWriter) startObject() { w.begin('{') }
func (w *jsonWriter) endObject()   { w.end('}') }

func (w *jsonWriter) startArray() {
	w.begin('[')
	if w.pretty {
		w.b.WriteByte(' ')
	}
}

func (w *jsonWriter) endArray() {
	if w.pretty && w.sep != 0 {
		w.b.WriteByte(' ')
	}
	w.sep = 0
	w.end(']')
}

func (w *jsonWriter) name(key string) {
	w.eor()
	w.eol()
	w.sep = 0
	w.puts(key)
	w.b.WriteByte(':')
	if w.pretty {
		w.b.WriteByte(' ')
	}
}

func (w *jsonWriter) puts(s string) {
	w.b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\t':
			w.b.WriteString(`\t`)
		case '\n':
			w.b.WriteString(`\n`)
		case '\r':
			w.b.WriteString(`\r`)
		case '\f':
			w.b.WriteString(`\f`)
		case '\b':
			w.b.WriteString(`\b`)
		case '\\':
			w.b.WriteString(`\\`)
		case '"':
			w.b.WriteString(`\"`)
		default:
			w.b.WriteByte(c)
		}
	}
	w.b.WriteByte('"')
}

// Each value owes the separator itself (json_writer's jsonw_eor), which is
// empty right after a name.

func (w *jsonWriter) stringField(key, v string) {
	w.name(key)
	w.eor()
	w.puts(v)
}

func (w *jsonWriter) uintField(key string, v uint64) {
	w.name(key)
	w.eor()
	w.b.WriteString(strconv.FormatUint(v, 10))
}

func (w *jsonWriter) intField(key string, v int64) {
	w.name(key)
	w.eor()
	w.b.WriteString(strconv.FormatInt(v, 10))
}

func (w *jsonWriter) boolField(key string, v bool) {
	w.name(key)
	w.eor()
	w.b.WriteString(strconv.FormatBool(v))
}

func (w *jsonWriter) nullField(key string) {
	w.name(key)
	w.eor()
	w.b.WriteString("null")
}

// stringValue writes an array element.
func (w *jsonWriter) stringValue(v string) {
	w.eor()
	w.puts(v)
}
