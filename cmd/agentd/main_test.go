package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/agentproto"
)

// TestServesStdio runs the built agentd outside PID 1, where it serves the
// protocol on stdin and stdout: ready, an exec with rlimits (which goes
// through the exec shim, i.e. agentd re-executing itself), then EOF ends it.
func TestServesStdio(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: this test builds agentd")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "agentd")
	if out, err := goCmd(t, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// Let other users reach the binary: the test's temp dirs are 0700. Only
	// the directories strictly below os.TempDir() are touched.
	for d := dir; strings.HasPrefix(d, filepath.Clean(os.TempDir())+"/"); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	dec := agentproto.NewDecoder(stdout)
	m, err := dec.Decode()
	if err != nil || m.Type != agentproto.TypeReady {
		t.Fatalf("first frame %v, %v; want core.ready", m.Type, err)
	}
	enc := agentproto.NewEncoder(stdin)
	run := func(id uint32, req agentproto.ExecRequest) string {
		t.Helper()
		m, _ := agentproto.New(id, agentproto.TypeExecRequest, req)
		if err := enc.Encode(m); err != nil {
			t.Fatal(err)
		}
		var out string
		for {
			m, err := dec.Decode()
			if err != nil {
				t.Fatalf("decode: %v (stdout so far %q)", err, out)
			}
			switch m.Type {
			case agentproto.TypeExecStdout:
				var d agentproto.ExecData
				if err := m.Decode(&d); err != nil {
					t.Fatal(err)
				}
				out += string(d.Data)
			case agentproto.TypeExecFailed:
				var f agentproto.ExecFailed
				m.Decode(&f)
				t.Fatalf("exec failed: %+v", f)
			case agentproto.TypeExecExited:
				return out
			}
		}
	}
	limits := []agentproto.Rlimit{{Resource: "nofile", Soft: 99, Hard: 99}}
	if out := run(1, agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "ulimit -n"}, Rlimits: limits}); out != "99\n" {
		t.Errorf("ulimit -n = %q; want 99", out)
	}
	if os.Getuid() == 0 {
		// The shim runs as the target user already, so agentd must be
		// executable by it.
		user := "65534"
		out := run(2, agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "id -u; ulimit -n"}, Rlimits: limits, User: &user})
		if out != "65534\n99\n" {
			t.Errorf("as 65534: got %q; want \"65534\\n99\\n\"", out)
		}
	}
	stdin.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("agentd exited with %v; want success on EOF", err)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("agentd did not exit on EOF")
	}
}
