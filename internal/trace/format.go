package trace

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Format is how a trace is written.
type Format string

// The formats of a trace file.
const (
	FormatCSV  Format = "csv"  // a header line, then one row per record
	FormatJSON Format = "json" // one JSON object per line
)

// Writer writes records in one format. It buffers: call Flush.
type Writer struct {
	format  Format
	w       *bufio.Writer
	csv     *csv.Writer
	started bool // the CSV header is out
}

// NewWriter writes records to w in format f (FormatCSV unless FormatJSON).
func NewWriter(w io.Writer, f Format) *Writer {
	tw := &Writer{format: f, w: bufio.NewWriter(w)}
	if f != FormatJSON {
		tw.format = FormatCSV
		tw.csv = csv.NewWriter(tw.w)
	}
	return tw
}

// start writes the CSV header, once.
func (w *Writer) start() error {
	if w.started || w.csv == nil {
		return nil
	}
	w.started = true
	names := make([]string, len(columns))
	for i, c := range columns {
		names[i] = c.name
	}
	return w.csv.Write(names)
}

// Write writes recs. A record that could not be read back as it is (a
// missing field its kind needs, a control character in a name) is an
// error, and nothing after it is written.
func (w *Writer) Write(recs ...Record) error {
	if err := w.start(); err != nil {
		return fmt.Errorf("trace: writing: %w", err)
	}
	for i := range recs {
		r := &recs[i]
		if err := r.check(); err != nil {
			return fmt.Errorf("trace: not writing a %s record of %s: %w", r.Kind, r.Time.Format("15:04:05.000"), err)
		}
		cells := cellsOf(r)
		var err error
		if w.csv != nil {
			err = w.csv.Write(cells)
		} else {
			err = writeJSON(w.w, cells)
		}
		if err != nil {
			return fmt.Errorf("trace: writing: %w", err)
		}
	}
	return nil
}

// Flush writes what is buffered (and the CSV header, if no record came).
func (w *Writer) Flush() error {
	err := w.start()
	if w.csv != nil {
		w.csv.Flush()
		err = errors.Join(err, w.csv.Error())
	}
	if err == nil {
		err = w.w.Flush()
	}
	if err != nil {
		return fmt.Errorf("trace: writing: %w", err)
	}
	return nil
}

// cellsOf is r's value in each column, "" where it writes none.
func cellsOf(r *Record) []string {
	cells := make([]string, len(columns))
	for i, c := range columns {
		if !c.applies(r.Kind) {
			continue
		}
		if s, ok := c.format(r); ok {
			cells[i] = s
		}
	}
	return cells
}

// writeJSON writes one object of the non-empty cells, in column order.
func writeJSON(w *bufio.Writer, cells []string) error {
	w.WriteByte('{')
	first := true
	for i, c := range columns {
		if cells[i] == "" {
			continue
		}
		if !first {
			w.WriteByte(',')
		}
		first = false
		name, _ := json.Marshal(c.name)
		w.Write(name)
		w.WriteByte(':')
		if c.number {
			w.WriteString(cells[i])
		} else {
			s, _ := json.Marshal(cells[i]) // a string always marshals
			w.Write(s)
		}
	}
	w.WriteByte('}')
	return w.WriteByte('\n')
}

// Reader reads a trace in either format, told apart by its first byte
// ('{': JSON lines).
type Reader struct {
	br     *bufio.Reader
	format Format // "" until the first Read

	csv   *csv.Reader
	index []int // CSV: each column's position in the header, -1 when absent
	line  int   // JSON: lines read
}

// NewReader reads a trace from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReader(r)}
}

// ReadAll reads every record of r.
func ReadAll(r io.Reader) ([]Record, error) {
	tr := NewReader(r)
	var recs []Record
	for {
		rec, err := tr.Read()
		if err == io.EOF {
			return recs, nil
		}
		if err != nil {
			return recs, err
		}
		recs = append(recs, rec)
	}
}

// Read returns the next record, or io.EOF after the last. Errors name
// the line.
func (r *Reader) Read() (Record, error) {
	if r.format == "" {
		if err := r.detect(); err != nil {
			return Record{}, err
		}
	}
	if r.format == FormatJSON {
		return r.readJSON()
	}
	return r.readCSV()
}

// detect reads the CSV header, or finds a JSON object first.
func (r *Reader) detect() error {
	for {
		b, err := r.br.ReadByte()
		if err != nil {
			return err // io.EOF: an empty trace
		}
		if b == ' ' || b == '\t' || b == '\r' || b == '\n' {
			continue
		}
		r.br.UnreadByte()
		if b == '{' {
			r.format = FormatJSON
			return nil
		}
		break
	}
	r.format = FormatCSV
	r.csv = csv.NewReader(r.br)
	r.csv.ReuseRecord = true
	header, err := r.csv.Read()
	if err != nil {
		return fmt.Errorf("trace: header: %w", err)
	}
	pos := map[string]int{}
	for i, name := range header {
		if _, dup := pos[name]; dup {
			return fmt.Errorf("trace: header: column %q twice", name)
		}
		pos[name] = i
	}
	r.index = make([]int, len(columns))
	for i, c := range columns {
		p, ok := pos[c.name]
		if !ok {
			p = -1
			if c.name == "time" || c.name == "kind" {
				return fmt.Errorf("trace: header: no %q column: not a trace", c.name)
			}
		}
		r.index[i] = p
	}
	return nil
}

func (r *Reader) readCSV() (Record, error) {
	row, err := r.csv.Read()
	if err == io.EOF {
		return Record{}, io.EOF
	}
	if err != nil {
		return Record{}, fmt.Errorf("trace: %w", err)
	}
	line, _ := r.csv.FieldPos(0)
	cells := make([]string, len(columns))
	for i, p := range r.index {
		if p >= 0 {
			cells[i] = row[p]
		}
	}
	return recordOf(cells, line)
}

func (r *Reader) readJSON() (Record, error) {
	for {
		text, err := r.br.ReadBytes('\n')
		if len(text) == 0 && err != nil {
			return Record{}, err
		}
		r.line++
		text = bytes.TrimSpace(text)
		if len(text) == 0 {
			continue
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(text, &obj); err != nil {
			return Record{}, fmt.Errorf("trace: line %d: %w", r.line, err)
		}
		cells := make([]string, len(columns))
		for i, c := range columns {
			v, ok := obj[c.name]
			if !ok {
				continue
			}
			if cells[i], err = jsonCell(c, v); err != nil {
				return Record{}, fmt.Errorf("trace: line %d: %s: %w", r.line, c.name, err)
			}
		}
		return recordOf(cells, r.line)
	}
}

// jsonCell is the text of a JSON value as the CSV cell of column c.
func jsonCell(c column, v json.RawMessage) (string, error) {
	if c.number {
		if len(v) == 0 || v[0] < '0' || v[0] > '9' {
			return "", fmt.Errorf("%s is not a non-negative number", v)
		}
		return string(v), nil
	}
	var s string
	if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil {
		return "", fmt.Errorf("%s is not a string", v)
	}
	return s, nil
}

// recordOf parses the cells of one row, one per column ("" for none).
func recordOf(cells []string, line int) (Record, error) {
	var r Record
	for i, c := range columns {
		// A cell of a column the kind does not have is ignored, as it
		// would not be written back.
		if cells[i] == "" || !c.applies(r.Kind) {
			continue
		}
		if err := c.parse(&r, cells[i]); err != nil {
			// strconv's errors repeat the text, which is quoted already.
			var ne *strconv.NumError
			if errors.As(err, &ne) {
				err = ne.Err
			}
			return Record{}, fmt.Errorf("trace: line %d: %s %q: %w", line, c.name, cells[i], err)
		}
	}
	if err := r.check(); err != nil {
		return Record{}, fmt.Errorf("trace: line %d: %w", line, err)
	}
	return r, nil
}
