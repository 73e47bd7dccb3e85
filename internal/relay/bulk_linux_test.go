package relay

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/agent"
	"github.com/msb-go/msb/internal/agentclient"
	"github.com/msb-go/msb/internal/agentproto"
	"github.com/msb-go/msb/internal/launch"
)

// TestRelayBulkIntegrity moves files of several bulk frames in and out
// through the real agent, the relay and three clients at once — writes,
// reads of each other's files, exec stdout — and compares every byte, of
// the transfers and of exec.log. Bulk frames live in recycled buffers on
// three hops (agentd's writer, the relay's writers) and the exec.log tap
// shares exec output frames with the client writer: a buffer given back
// while still in use shows up here as corrupted or mixed-up data.
func TestRelayBulkIntegrity(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	guestEnd := os.NewFile(uintptr(fds[0]), "guest")
	hostEnd := os.NewFile(uintptr(fds[1]), "host")
	served := make(chan error, 1)
	go func() {
		served <- agent.Serve(context.Background(), guestEnd, agent.ServeOptions{Env: []string{"PATH=" + os.Getenv("PATH")}})
	}()
	hostConn, err := net.FileConn(hostEnd)
	hostEnd.Close()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "exec.log")
	// No rotation: the test reads back one file.
	el, err := launch.OpenExecLog(logPath, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer el.Close()
	env := serveRelay(t, RelayOptions{ExecLog: el}, hostConn, func() {
		guestEnd.Close()
		<-served
	})
	// Two and a bit bulk frames per file: every transfer has pooled
	// frames and a short tail.
	const clients, size = 3, 2*agentproto.BulkChunk + 12345
	content := make([][]byte, clients)
	for i := range content {
		content[i] = make([]byte, size)
		rand.NewChaCha8([32]byte{byte(i + 1)}).Read(content[i])
	}
	name := func(i int) string { return filepath.Join(dir, fmt.Sprintf("f%d", i)) }
	// Generous: ~50 MiB under the race detector on a loaded machine; a
	// deadlock still ends here.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cs := make([]*agentclient.Client, clients)
	for i := range cs {
		c, err := agentclient.Dial(ctx, env.sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs[i] = c
	}
	// Round 1: every client writes its file; round 2: every client reads
	// every file, twice at once, and cats its own through exec stdout.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.WriteFile(ctx, name(i), nil, bytes.NewReader(content[i])); err != nil {
				errs <- fmt.Errorf("client %d write: %w", i, err)
			}
		}()
	}
	wg.Wait()
	check := func(what string, got []byte, err error, want []byte) {
		switch {
		case err != nil:
			errs <- fmt.Errorf("%s: %w", what, err)
		case !bytes.Equal(got, want):
			errs <- fmt.Errorf("%s: %d bytes differ from the %d written (first difference at %d)", what, len(got), len(want), firstDiff(got, want))
		}
	}
	for i, c := range cs {
		for j := range clients {
			for k := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := c.ReadFile(ctx, name(j))
					if err != nil {
						errs <- fmt.Errorf("client %d read f%d: %w", i, j, err)
						return
					}
					got, err := io.ReadAll(r)
					r.Close()
					check(fmt.Sprintf("client %d read %d of f%d", i, k, j), got, err, content[j])
				}()
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.Exec(ctx, agentproto.ExecRequest{Cmd: "cat", Args: []string{name(i)}}, nil)
			var out []byte
			if err == nil {
				out = res.Stdout
				if res.ExitCode != 0 {
					err = fmt.Errorf("exit %d: %s", res.ExitCode, res.Stderr)
				}
			}
			check(fmt.Sprintf("client %d cat", i), out, err, content[i])
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range clients {
		if got, err := os.ReadFile(name(i)); err != nil || !bytes.Equal(got, content[i]) {
			t.Errorf("f%d on disk: %d bytes, %v; want the %d written", i, len(got), err, size)
		}
	}
	// Each cat's output is in exec.log, whole: the sessions' records,
	// decoded and joined, are the three files in some order.
	logged := execLogOutput(t, logPath)
	if len(logged) != clients {
		t.Fatalf("exec.log holds output of %d sessions; want %d", len(logged), clients)
	}
	for i := range clients {
		found := false
		for id, got := range logged {
			if bytes.Equal(got, content[i]) {
				found = true
				delete(logged, id)
				break
			}
		}
		if !found {
			t.Errorf("exec.log has no session with the %d bytes of f%d", size, i)
		}
	}
}

// execLogOutput returns the exact bytes exec.log at path holds for each
// session id.
func execLogOutput(t *testing.T, path string) map[uint64][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64][]byte{}
	for line := range bytes.Lines(data) {
		var rec struct {
			S, D, E string
			ID      uint64
		}
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("exec.log line %q: %v", line, err)
		}
		if rec.S == string(launch.SourceSystem) {
			continue
		}
		d := []byte(rec.D)
		if rec.E == "b64" {
			if d, err = base64.StdEncoding.DecodeString(rec.D); err != nil {
				t.Fatalf("exec.log line %q: %v", line, err)
			}
		}
		out[rec.ID] = append(out[rec.ID], d...)
	}
	return out
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
