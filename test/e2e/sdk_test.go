package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msb-go/msb"
)

// TestSDK drives the Go SDK from this test process: the SDK finds msb
// through MSB_PATH, creates an attached sandbox, runs collected and streamed
// commands, reports a failed exec as *ExecFailed, and stops on Close.
func TestSDK(t *testing.T) {
	c := newCLI(t) // builds msb + agentd and a private home
	rootfs := busyboxRootfs(t)
	sdkFor(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	sb, err := msb.Create(ctx, "sdk", msb.WithRootfs(rootfs), msb.WithEnv("GREETING", "hi"), msb.WithMemory(256),
		msb.WithFile("/etc/motd", []byte("patched\n"), 0o640), msb.WithRemoved("/bin/sleep"),
		msb.WithSymlink("/etc/motd", "/root/motd-link"), msb.WithDir("/srv/data", 0o700))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	// Patches written into the upper layer before boot.
	res, err := sb.Exec(ctx, "sh", []string{"-c", "cat /root/motd-link; stat -c '%a %n' /etc/motd /srv/data; ls /bin/sleep 2>&1 || echo sleep-removed"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "patched\n640 /etc/motd\n700 /srv/data\n"; !strings.HasPrefix(string(res.Stdout), want) || !strings.Contains(string(res.Stdout), "sleep-removed") {
		t.Errorf("patched files: %q; want prefix %q and sleep-removed", res.Stdout, want)
	}
	res, err = sb.Exec(ctx, "sh", []string{"-c", "echo $GREETING; echo oops >&2; exit 4"})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "hi\n" || string(res.Stderr) != "oops\n" || res.ExitCode != 4 {
		t.Errorf("Exec = %q %q %d; want hi, oops, 4", res.Stdout, res.Stderr, res.ExitCode)
	}

	_, err = sb.Exec(ctx, "no-such-binary", nil)
	var ef *msb.ExecFailed
	if !errors.As(err, &ef) || ef.Kind != "not_found" || ef.ExitCode() != 127 {
		t.Errorf("Exec(no-such-binary) error = %v; want *ExecFailed not_found", err)
	}

	ex, err := sb.ExecStream(ctx, "sh", []string{"-c", "cat > /tmp/in; wc -c < /tmp/in"})
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("x"), 3<<20)
	go func() {
		ex.Stdin().Write(payload)
		ex.Stdin().Close()
	}()
	out, _ := io.ReadAll(ex.Stdout())
	code, err := ex.Wait()
	if err != nil || code != 0 || strings.TrimSpace(string(out)) != "3145728" {
		t.Errorf("ExecStream wc = %q code %d err %v; want 3145728", out, code, err)
	}

	// 16 relay clients at once (every slot): sb's own and 15 more
	// handles, each with its own connection, each running an exec whose
	// output must come back whole to it alone.
	execs := []*msb.Sandbox{sb}
	for range 15 {
		h, err := msb.Get(ctx, "sdk")
		if err != nil {
			t.Fatal(err)
		}
		execs = append(execs, h)
	}
	var wg sync.WaitGroup
	for i, h := range execs {
		wg.Go(func() {
			res, err := h.Exec(ctx, "sh", []string{"-c", fmt.Sprintf("yes %d | head -n 20000", i)})
			if err != nil {
				t.Errorf("client %d: exec: %v", i, err)
				return
			}
			if want := strings.Repeat(fmt.Sprintf("%d\n", i), 20000); string(res.Stdout) != want {
				t.Errorf("client %d: %d bytes of stdout; want %d bytes of %q lines", i, len(res.Stdout), len(want), fmt.Sprint(i))
			}
		})
	}
	wg.Wait()
	for _, h := range execs[1:] {
		h.Close()
	}

	list, err := msb.List(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "sdk" || list[0].Status != "Running" {
		t.Errorf("List = %+v, %v; want sdk Running", list, err)
	}
	// Close on an attached sandbox stops it.
	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := msb.Get(ctx, "sdk")
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if err := got.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	in, err := got.Info(ctx)
	if err != nil || in.Status != "Stopped" {
		t.Errorf("after Close: %+v, %v; want Stopped", in, err)
	}
	if err := msb.Remove(ctx, "sdk", false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(c.home, "sandboxes", "sdk")); !os.IsNotExist(err) {
		t.Errorf("sandbox dir still there after Remove: %v", err)
	}
	if _, err := msb.Get(ctx, "sdk"); !errors.Is(err, msb.ErrNotFound) {
		t.Errorf("Get after Remove = %v; want ErrNotFound", err)
	}
}
