package launch

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Source tags the origin of an exec.log record (reference §5).
type Source string

// Sources of exec.log records.
const (
	SourceStdout Source = "stdout"
	SourceStderr Source = "stderr"
	SourceOutput Source = "output" // PTY sessions: stdout and stderr are one stream
	SourceSystem Source = "system"
)

// Lifecycle markers written as system records.
const (
	MarkerStarted = "--- sandbox started ---\n"
	MarkerStopped = "--- sandbox stopped ---\n"
)

// ExecRecord is one exec.log line.
type ExecRecord struct {
	Time   time.Time
	Source Source
	Data   string
	ID     uint64 // relay log session id; 0 for system records
}

// execLine is the JSON Lines schema: {"t","s","d","id"?,"e"?}. "e" is "b64"
// when d holds base64: the reference's readers accept it (its writer never
// uses it), and msb writes it for output that is not valid UTF-8, which
// keeps binary output whole and costs a fraction of escaping it as text.
type execLine struct {
	T  string `json:"t"`
	S  Source `json:"s"`
	D  string `json:"d"`
	ID uint64 `json:"id,omitempty"`
	E  string `json:"e,omitempty"`
}

// ExecLog writes exec.log. It is safe for concurrent use; each record is one
// Write on the underlying writer, so records never interleave.
type ExecLog struct {
	w   io.Writer
	now func() time.Time
}

// OpenExecLog opens (appending) the exec.log at path on a RotatingFile.
func OpenExecLog(path string, maxBytes int64) (*ExecLog, error) {
	f, err := Open(path, maxBytes)
	if err != nil {
		return nil, fmt.Errorf("open exec log: %w", err)
	}
	return NewExecLog(f), nil
}

// NewExecLog writes records to w, which must accept concurrent Writes (as
// RotatingFile does). Close closes w if it is an io.Closer.
func NewExecLog(w io.Writer) *ExecLog {
	return &ExecLog{w: w, now: time.Now}
}

// Write records data from an exec session: as text when it is valid UTF-8,
// else base64 ("e":"b64"; readers show it with invalid bytes as U+FFFD).
// An empty data slice writes nothing.
//
// The relay calls it on the guest's output path, so it must keep up with a
// bulk copy: the line is built by hand into a pooled buffer, not through
// encoding/json's reflection.
func (l *ExecLog) Write(source Source, id uint64, data []byte) error {
	return l.WriteJoined(source, id, nil, data)
}

// WriteJoined records head followed by data as one record, the same line
// Write(source, id, head+data) writes, without joining them first. The
// relay's tap holds back a character split across two output chunks and
// logs it in front of the next chunk: joining the two cost a fresh copy of
// the whole chunk (a quarter of the chunks of a binary stdout end in what
// looks like the start of a character). head is meant to be short.
func (l *ExecLog) WriteJoined(source Source, id uint64, head, data []byte) error {
	if len(head)+len(data) == 0 {
		return nil
	}
	// The junction: head and the bytes of data up to the first that
	// starts a character, or 4 bytes of data (no character has 4
	// continuation bytes, so then the junction is invalid on its own).
	// rest then starts a character, so head+data is valid UTF-8 exactly
	// when both junction and rest are.
	k := 0
	for k < len(data) && k < utf8.UTFMax && !utf8.RuneStart(data[k]) {
		k++
	}
	var jbuf [16]byte
	junction := append(jbuf[:0], head...)
	junction = append(junction, data[:k]...)
	rest := data[k:]
	bp := lineBufs.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= maxPooledLine {
			lineBufs.Put(bp)
		}
	}()
	b := append((*bp)[:0], `{"t":"`...)
	b = l.now().UTC().AppendFormat(b, rfc3339Milli)
	b = append(b, `","s":`...)
	b = appendJSONString(b, string(source))
	b = append(b, `,"d":"`...)
	b64 := !utf8.Valid(junction) || !utf8.Valid(rest)
	if b64 {
		// base64 works on 3-byte groups: the junction takes up to two
		// more bytes of rest so that rest starts a group.
		m := min((3-len(junction)%3)%3, len(rest))
		junction = append(junction, rest[:m]...)
		b = appendBase64(b, junction)
		b = appendBase64(b, rest[m:])
	} else {
		// Both parts are whole characters, so no escape spans them.
		b = appendJSONRaw(b, junction)
		b = appendJSONRaw(b, rest)
	}
	b = append(b, '"')
	if id != 0 {
		b = append(b, `,"id":`...)
		b = strconv.AppendUint(b, id, 10)
	}
	if b64 {
		b = append(b, `,"e":"b64"`...)
	}
	b = append(b, "}\n"...)
	*bp = b
	if _, err := l.w.Write(b); err != nil {
		return fmt.Errorf("write exec log: %w", err)
	}
	return nil
}

// maxPooledLine keeps one huge record from pinning its buffer in the pool.
const maxPooledLine = 8 << 20

var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// appendJSONString appends s as a JSON string, quotes included.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendJSONRaw(b, []byte(s))
	return append(b, '"')
}

// appendJSONRaw appends valid UTF-8 text escaped as encoding/json does
// (control characters, quote, backslash, the HTML-sensitive <, > and &, and
// U+2028/U+2029), without quotes. Runs that need no escape are copied
// whole.
func appendJSONRaw(b, text []byte) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(text); {
		c := text[i]
		if jsonPlain[c] {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			// text is valid UTF-8: only U+2028 and U+2029 (E2 80 A8/A9)
			// need an escape among the multi-byte sequences.
			if c == 0xE2 && i+2 < len(text) && text[i+1] == 0x80 && text[i+2]&^1 == 0xA8 {
				b = append(b, text[start:i]...)
				b = append(b, '\\', 'u', '2', '0', '2', hex[text[i+2]&0xf])
				i += 3
				start = i
				continue
			}
			i++
			continue
		}
		b = append(b, text[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	return append(b, text[start:]...)
}

// jsonPlain marks the bytes appendJSONRaw copies unchanged: printable
// ASCII except quote, backslash and the HTML-sensitive <, > and &, and
// every byte of a multi-byte sequence other than the lead byte E2.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = true
	}
	for _, c := range []byte{'"', '\\', '<', '>', '&', 0xE2} {
		t[c] = false
	}
	return t
}()

// System records a system message, adding a trailing newline if missing.
func (l *ExecLog) System(text string) error {
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	return l.write(execLine{S: SourceSystem, D: lossyUTF8([]byte(text))})
}

// Started writes the "--- sandbox started ---" marker.
func (l *ExecLog) Started() error { return l.System(MarkerStarted) }

// Stopped writes the "--- sandbox stopped ---" marker.
func (l *ExecLog) Stopped() error { return l.System(MarkerStopped) }

func (l *ExecLog) write(rec execLine) error {
	rec.T = l.now().UTC().Format(rfc3339Milli)
	line, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode exec log record: %w", err)
	}
	line = append(line, '\n')
	if _, err := l.w.Write(line); err != nil {
		return fmt.Errorf("write exec log: %w", err)
	}
	return nil
}

// Close closes the underlying writer if it is an io.Closer.
func (l *ExecLog) Close() error {
	if c, ok := l.w.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// lossyUTF8 converts b to a string, replacing each invalid byte with U+FFFD.
func lossyUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	// Copy valid runs whole and replace each invalid byte: binary output
	// (the common invalid case) must not cost a rune-by-rune rebuild.
	out := make([]byte, 0, len(b)+len(b)/2)
	for len(b) > 0 {
		i := 0
		for i < len(b) {
			if c := b[i]; c < utf8.RuneSelf {
				i++
				continue
			}
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			i += size
		}
		out = append(out, b[:i]...)
		if i < len(b) {
			out = append(out, "\uFFFD"...)
			i++
		}
		b = b[i:]
	}
	return string(out)
}

// SourceMask selects record sources when reading exec.log.
type SourceMask uint8

// Source mask bits. The zero mask means DefaultSources.
const (
	MaskStdout SourceMask = 1 << iota
	MaskStderr
	MaskOutput
	MaskSystem

	DefaultSources = MaskStdout | MaskStderr | MaskOutput
	AllSources     = DefaultSources | MaskSystem
)

func (m SourceMask) has(s Source) bool {
	switch s {
	case SourceStdout:
		return m&MaskStdout != 0
	case SourceStderr:
		return m&MaskStderr != 0
	case SourceOutput:
		return m&MaskOutput != 0
	case SourceSystem:
		return m&MaskSystem != 0
	}
	return false
}

// ExecLogFilter selects records in ReadExecLog. The zero value selects every
// stdout, stderr and output record.
type ExecLogFilter struct {
	Sources SourceMask // zero means DefaultSources
	Since   time.Time  // inclusive; zero means no lower bound
	Until   time.Time  // exclusive; zero means no upper bound
	Tail    int        // keep only the last Tail matches; <= 0 keeps all
	// Grep, when set, keeps only records whose text it matches.
	Grep *regexp.Regexp
}

// Match reports whether r passes the filter's sources, time bounds and
// pattern (Tail is not a property of one record).
func (f ExecLogFilter) Match(r ExecRecord) bool {
	mask := f.Sources
	if mask == 0 {
		mask = DefaultSources
	}
	if !mask.has(r.Source) {
		return false
	}
	if !f.Since.IsZero() && r.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !r.Time.Before(f.Until) {
		return false
	}
	if f.Grep != nil && !f.Grep.MatchString(r.Data) {
		return false
	}
	return true
}

// maxExecLogLine bounds one exec.log line; a 4 KiB chunk encodes to < 25 KiB,
// so longer lines are not ours and are skipped.
const maxExecLogLine = 1 << 20

// ReadExecLog reads the exec.log files in paths (oldest first, as LogFiles
// returns them) and returns the records matching filter in file order. Missing
// files are skipped, as are lines that do not parse (a torn last line, or an
// oversized one).
func ReadExecLog(paths []string, filter ExecLogFilter) ([]ExecRecord, error) {
	var out []ExecRecord
	for _, p := range paths {
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read exec log: %w", err)
		}
		out, err = readExecLogFrom(f, filter, out)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read exec log %s: %w", p, err)
		}
	}
	return out, nil
}

func readExecLogFrom(r io.Reader, filter ExecLogFilter, out []ExecRecord) ([]ExecRecord, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	tooLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > maxExecLogLine {
			tooLong = true
		} else if !tooLong {
			line = append(line, chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if !tooLong {
			if rec, ok := ParseExecRecord(line); ok && filter.Match(rec) {
				out = append(out, rec)
				if filter.Tail > 0 && len(out) > 2*filter.Tail {
					// Keep memory proportional to Tail on long logs.
					out = append(out[:0], out[len(out)-filter.Tail:]...)
				}
			}
		}
		line, tooLong = line[:0], false
		if err == io.EOF {
			break
		}
		if err != nil {
			return out, err
		}
	}
	if filter.Tail > 0 && len(out) > filter.Tail {
		out = append(out[:0], out[len(out)-filter.Tail:]...)
	}
	return out, nil
}

// ParseExecRecord parses one exec.log line. It reports false for anything that
// is not a well-formed record.
func ParseExecRecord(line []byte) (ExecRecord, bool) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return ExecRecord{}, false
	}
	var l execLine
	if err := json.Unmarshal(line, &l); err != nil {
		return ExecRecord{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, l.T)
	if err != nil {
		return ExecRecord{}, false
	}
	switch l.S {
	case SourceStdout, SourceStderr, SourceOutput, SourceSystem:
	default:
		return ExecRecord{}, false
	}
	data := l.D
	switch l.E {
	case "":
	case "b64":
		raw, err := base64.StdEncoding.DecodeString(l.D)
		if err != nil {
			return ExecRecord{}, false
		}
		data = lossyUTF8(raw)
	default:
		return ExecRecord{}, false
	}
	return ExecRecord{Time: t, Source: l.S, Data: data, ID: l.ID}, true
}
