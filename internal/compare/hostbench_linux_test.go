package compare

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/agent"
	"github.com/msb-go/msb/internal/agentclient"
	"github.com/msb-go/msb/internal/agentproto"
	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/relay"
)

// hostAgent is agentd's serve loop as a host process's goroutine behind the
// sandbox process's real relay (with its exec.log tap) and the real
// client, on the same kind of stream the console gives the relay: the
// whole host-side path of an exec or a file transfer, without the VM.
func hostAgent(b *testing.B) *agentclient.Client {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	guest := os.NewFile(uintptr(fds[0]), "guest")
	host := os.NewFile(uintptr(fds[1]), "host")
	dir, err := os.MkdirTemp("", "msbcmp")
	if err != nil {
		b.Fatal(err)
	}
	el, err := launch.OpenExecLog(filepath.Join(dir, "exec.log"), 0)
	if err != nil {
		b.Fatal(err)
	}
	serveDone := make(chan error, 1)
	go func() {
		serveDone <- agent.Serve(ctx, guest, agent.ServeOptions{Env: []string{"PATH=" + os.Getenv("PATH")}})
	}()
	r := relay.NewRelay(host, relay.RelayOptions{ExecLog: el, Logger: slog.New(slog.DiscardHandler)})
	if _, err := r.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.Serve(ctx, ln) }()
	c, err := agentclient.Dial(ctx, sock)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		c.Close()
		cancel()
		r.Close()
		<-relayDone
		guest.Close()
		host.Close()
		<-serveDone
		el.Close()
		os.RemoveAll(dir)
	})
	return c
}

func medianDur(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkCompareExecHost times one exec of `true` through the real
// relay and client against agentd as a host process, next to os/exec
// running `true` directly, alternating batches so both see the same load.
func BenchmarkCompareExecHost(b *testing.B) {
	c := hostAgent(b)
	path, err := exec.LookPath("true")
	if err != nil {
		b.Skip("no true")
	}
	ctx := context.Background()
	var msb, peer []time.Duration
	for b.Loop() {
		for range 10 {
			for range 20 {
				start := time.Now()
				res, err := c.Exec(ctx, agentproto.ExecRequest{Cmd: path}, nil)
				if err != nil || res.ExitCode != 0 {
					b.Fatalf("exec true: %v, %+v", err, res)
				}
				msb = append(msb, time.Since(start))
			}
			for range 20 {
				start := time.Now()
				if err := exec.Command(path).Run(); err != nil {
					b.Fatal(err)
				}
				peer = append(peer, time.Since(start))
			}
		}
	}
	b.ReportMetric(float64(medianDur(msb).Nanoseconds())/1e3, "msb-µs")
	b.ReportMetric(float64(medianDur(peer).Nanoseconds())/1e3, "peer-µs")
}

const copySize = 256 << 20

// copyFile writes copySize bytes of incompressible data.
func copyFile(b *testing.B, dir string) string {
	b.Helper()
	name := filepath.Join(dir, "src")
	f, err := os.Create(name)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{1})
	if _, err := io.CopyN(f, rng, copySize); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return name
}

func mbps(d time.Duration) float64 { return float64(copySize) / 1e6 / d.Seconds() }

// BenchmarkCompareCopyHost moves 256 MiB four ways through the real relay
// and client with agentd as a host process — fs read out, fs write in,
// exec stdout, exec stdin — next to `cat` of the same file through a pipe.
func BenchmarkCompareCopyHost(b *testing.B) {
	c := hostAgent(b)
	dir := b.TempDir()
	src := copyFile(b, dir)
	dst := filepath.Join(dir, "dst")
	ctx := context.Background()
	timed := func(fn func() (int64, error)) time.Duration {
		b.Helper()
		start := time.Now()
		n, err := fn()
		if err != nil || n != copySize {
			b.Fatalf("moved %d bytes of %d: %v", n, copySize, err)
		}
		return time.Since(start)
	}
	read := func() (int64, error) {
		r, err := c.ReadFile(ctx, src)
		if err != nil {
			return 0, err
		}
		defer r.Close()
		return io.Copy(io.Discard, r)
	}
	write := func() (int64, error) {
		f, err := os.Open(src)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		if err := c.WriteFile(ctx, dst, nil, f); err != nil {
			return 0, err
		}
		fi, err := os.Stat(dst)
		if err != nil {
			return 0, err
		}
		return fi.Size(), nil
	}
	stdout := func() (int64, error) {
		s, err := c.ExecStream(ctx, agentproto.ExecRequest{Cmd: "cat", Args: []string{src}})
		if err != nil {
			return 0, err
		}
		s.Stdin().Close()
		n, err := io.Copy(io.Discard, s.Stdout())
		if code, werr := s.Wait(); werr != nil || code != 0 {
			return n, fmt.Errorf("cat: code %d, %v", code, werr)
		}
		return n, err
	}
	stdin := func() (int64, error) {
		s, err := c.ExecStream(ctx, agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "cat > " + dst}})
		if err != nil {
			return 0, err
		}
		f, err := os.Open(src)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		if _, err := io.Copy(s.Stdin(), f); err != nil {
			return 0, err
		}
		s.Stdin().Close()
		if code, err := s.Wait(); err != nil || code != 0 {
			return 0, fmt.Errorf("cat: code %d, %v", code, err)
		}
		fi, err := os.Stat(dst)
		if err != nil {
			return 0, err
		}
		return fi.Size(), nil
	}
	pipe := func() (int64, error) {
		cmd := exec.Command("cat", src)
		out, err := cmd.StdoutPipe()
		if err != nil {
			return 0, err
		}
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		n, err := io.Copy(io.Discard, out)
		if werr := cmd.Wait(); werr != nil {
			return n, werr
		}
		return n, err
	}
	ways := []struct {
		unit string
		fn   func() (int64, error)
		d    []time.Duration
	}{{"read-MB/s", read, nil}, {"write-MB/s", write, nil}, {"stdout-MB/s", stdout, nil},
		{"stdin-MB/s", stdin, nil}, {"pipe-MB/s", pipe, nil}}
	for b.Loop() {
		for i := range ways {
			ways[i].d = append(ways[i].d, timed(ways[i].fn))
		}
	}
	for _, w := range ways {
		b.ReportMetric(mbps(medianDur(w.d)), w.unit)
	}
}
