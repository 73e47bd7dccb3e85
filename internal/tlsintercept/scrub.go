package tlsintercept

import (
	"io"
	"strings"
)

// scrubChunk is how much of the upstream body a scrubReader reads at once.
const scrubChunk = 32 << 10

// scrubString replaces every secret value in s by its placeholder, longest
// value first at each position.
func (ss *secretSet) scrubString(s string) string {
	if len(ss.secrets) == 0 {
		return s
	}
	var b strings.Builder
	last := 0
	for i := 0; i < len(s); {
		k := ss.valueAt(s[i:])
		if k < 0 {
			i++
			continue
		}
		b.WriteString(s[last:i])
		b.WriteString(ss.secrets[k].placeholder)
		i += len(ss.secrets[k].value)
		last = i
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// valueAt returns the index of the longest secret value that s starts with,
// or -1.
func (ss *secretSet) valueAt(s string) int {
	if s == "" || !ss.valueFirst[s[0]] {
		return -1
	}
	for _, k := range ss.byValue {
		if strings.HasPrefix(s, ss.secrets[k].value) {
			return k
		}
	}
	return -1
}

// maxValueLen is the length of the longest secret value.
func (ss *secretSet) maxValueLen() int {
	if len(ss.byValue) == 0 {
		return 0
	}
	return len(ss.secrets[ss.byValue[0]].value)
}

// scrubReader streams src with every secret value replaced by its
// placeholder. It holds back fewer than the longest value's length of bytes
// until it can tell whether they start a match, so a value split across
// reads is still caught; memory is bounded by scrubChunk plus that.
type scrubReader struct {
	src  io.ReadCloser
	ss   *secretSet
	in   []byte // read from src, not yet scanned
	out  []byte // scanned, ready for the caller
	err  error  // sticky error from src
	keep int    // bytes that must follow a position before it can be decided
}

func newScrubReader(src io.ReadCloser, ss *secretSet) *scrubReader {
	return &scrubReader{src: src, ss: ss, keep: ss.maxValueLen()}
}

func (r *scrubReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.err != nil {
			if len(r.in) == 0 {
				return 0, r.err
			}
			r.scan(true)
			continue
		}
		if cap(r.in)-len(r.in) < scrubChunk {
			grown := make([]byte, len(r.in), len(r.in)+scrubChunk)
			copy(grown, r.in)
			r.in = grown
		}
		n, err := r.src.Read(r.in[len(r.in):cap(r.in)])
		r.in = r.in[:len(r.in)+n]
		if err != nil {
			r.err = err
		}
		r.scan(r.err != nil)
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

// scan moves decided bytes from in to out. At EOF every byte is decided.
func (r *scrubReader) scan(eof bool) {
	s := string(r.in) // one copy per chunk; HasPrefix on a string is cheap
	var out []byte
	i := 0
	for i < len(s) {
		if !eof && len(s)-i < r.keep {
			break
		}
		if k := r.ss.valueAt(s[i:]); k >= 0 {
			out = append(out, r.ss.secrets[k].placeholder...)
			i += len(r.ss.secrets[k].value)
			continue
		}
		out = append(out, s[i])
		i++
	}
	r.out = out
	r.in = append(r.in[:0], s[i:]...)
}

func (r *scrubReader) Close() error { return r.src.Close() }
