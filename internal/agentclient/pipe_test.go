package agentclient

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// shortWriter accepts at most n bytes per Write.
type shortWriter struct {
	bytes.Buffer
	n int
}

func (w *shortWriter) Write(b []byte) (int, error) {
	return w.Buffer.Write(b[:min(len(b), w.n)])
}

func TestPipeWriteTo(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		chunks  []string
		end     func(p *pipe)
		w       io.Writer
		want    string
		wantErr error
	}{
		{name: "clean end", chunks: []string{"ab", "", "cde"}, end: func(p *pipe) { p.closeWrite(io.EOF) }, want: "abcde"},
		{name: "stream error after data", chunks: []string{"ab"}, end: func(p *pipe) { p.closeWrite(boom) }, want: "ab", wantErr: boom},
		{name: "reader gone", chunks: []string{"ab"}, end: func(p *pipe) { p.closeRead(boom) }, want: "", wantErr: boom},
		{name: "short write", chunks: []string{"abc"}, end: func(p *pipe) { p.closeWrite(io.EOF) }, w: &shortWriter{n: 2}, want: "ab", wantErr: io.ErrShortWrite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPipe()
			for _, c := range tt.chunks {
				p.write([]byte(c), nil)
			}
			tt.end(p)
			w := tt.w
			if w == nil {
				w = &bytes.Buffer{}
			}
			n, err := p.WriteTo(w)
			got := ""
			switch w := w.(type) {
			case *bytes.Buffer:
				got = w.String()
			case *shortWriter:
				got = w.String()
			}
			if got != tt.want || n != int64(len(tt.want)) || !errors.Is(err, tt.wantErr) {
				t.Errorf("WriteTo = %d, %v, wrote %q; want %d, %v, %q", n, err, got, len(tt.want), tt.wantErr, tt.want)
			}
		})
	}
}

// TestPipeWriteToWaits: WriteTo blocks for data and frees room for the
// writer as it goes, so a stream larger than the buffer limit passes.
func TestPipeWriteToWaits(t *testing.T) {
	p := newPipe()
	chunk := bytes.Repeat([]byte{1}, streamBufLimit/2)
	const chunks = 10
	go func() {
		for range chunks {
			p.write(bytes.Clone(chunk), nil)
		}
		p.closeWrite(io.EOF)
	}()
	n, err := p.WriteTo(io.Discard)
	if err != nil || n != chunks*int64(len(chunk)) {
		t.Errorf("WriteTo = %d, %v; want %d, nil", n, err, chunks*len(chunk))
	}
}
