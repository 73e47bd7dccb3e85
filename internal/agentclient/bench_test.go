package agentclient

import (
	"bytes"
	"io"
	"testing"

	"github.com/msb-go/msb/internal/agentproto"
)

func BenchmarkExecEcho(b *testing.B) {
	c, _ := startDirectTB(b)
	req := agentproto.ExecRequest{Cmd: "echo", Args: []string{"hi"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Exec(b.Context(), req, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadFile1MiB(b *testing.B) {
	c, _ := startDirectTB(b)
	if err := c.WriteFile(b.Context(), "/f", nil, bytes.NewReader(make([]byte, 1<<20))); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(1 << 20)
	for b.Loop() {
		r, err := c.ReadFile(b.Context(), "/f")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
}
