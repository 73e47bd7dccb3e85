package agent

import (
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/msb-go/msb/internal/agentproto"
)

// BenchmarkExecRoundTrip measures one exec of `true` through Serve over a
// socketpair: request, started, exited, collected by the client.
func BenchmarkExecRoundTrip(b *testing.B) {
	c := startServe(b, ServeOptions{Env: []string{"PATH=" + os.Getenv("PATH")}})
	b.ReportAllocs()
	for b.Loop() {
		r := c.exec(agentproto.ExecRequest{Cmd: "true"})
		if r.code != 0 || r.failed != nil {
			b.Fatalf("got %v", r)
		}
	}
}

// BenchmarkForkExecTrue is the baseline for BenchmarkExecRoundTrip: os/exec
// runs `true` directly.
func BenchmarkForkExecTrue(b *testing.B) {
	path, err := exec.LookPath("true")
	if err != nil {
		b.Skip("no true")
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := exec.Command(path).Run(); err != nil {
			b.Fatal(err)
		}
	}
}

const benchFileSize = 64 << 20

func benchFile(b *testing.B) string {
	b.Helper()
	name := filepath.Join(b.TempDir(), "data")
	f, err := os.Create(name)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, benchFileSize); err != nil {
		b.Fatal(err)
	}
	f.Close()
	return name
}

// BenchmarkCopyThroughput reads a 64 MiB file with fs Read through Serve.
func BenchmarkCopyThroughput(b *testing.B) {
	name := benchFile(b)
	c := startServe(b, ServeOptions{})
	b.SetBytes(benchFileSize)
	b.ResetTimer()
	for b.Loop() {
		_, ch := c.start(agentproto.TypeFsRequest, agentproto.FsRequest{Op: agentproto.FsOp{Kind: agentproto.FsRead, Path: name}})
		var n int
		for m := range ch {
			if m.Type == agentproto.TypeFsData {
				var d agentproto.FsData
				mustDecode(b, m, &d)
				n += len(d.Data)
			}
		}
		if n != benchFileSize {
			b.Fatalf("read %d bytes; want %d", n, benchFileSize)
		}
	}
}

// BenchmarkCatThroughput is the baseline for BenchmarkCopyThroughput: cat
// of the same file through a pipe.
func BenchmarkCatThroughput(b *testing.B) {
	name := benchFile(b)
	b.SetBytes(benchFileSize)
	b.ResetTimer()
	for b.Loop() {
		cmd := exec.Command("cat", name)
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, out)
		if err := cmd.Wait(); err != nil || n != benchFileSize {
			b.Fatalf("cat: %d bytes, %v", n, err)
		}
	}
}
