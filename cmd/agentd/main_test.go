package main

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/agentproto"
)

// TestServesStdio runs the built agentd outside PID 1, where it serves the
// protocol on stdin and stdout: ready, an exec with rlimits (which goes
// through the exec shim, i.e. agentd re-executing itself), then EOF ends it.
func TestServesStdio(t *testing.T) {
	if testing.Short() {
		t.Skip("builds agentd")
	}
	bin := filepath.Join(t.TempDir(), "agentd")
	if out, err := goCmd(t, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
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
	req, _ := agentproto.New(1, agentproto.TypeExecRequest, agentproto.ExecRequest{
		Cmd: "sh", Args: []string{"-c", "ulimit -n"},
		Rlimits: []agentproto.Rlimit{{Resource: "nofile", Soft: 99, Hard: 99}},
	})
	if err := agentproto.NewEncoder(stdin).Encode(req); err != nil {
		t.Fatal(err)
	}
	var out string
	for {
		m, err := dec.Decode()
		if err != nil {
			t.Fatalf("decode: %v (stdout so far %q)", err, out)
		}
		if m.Type == agentproto.TypeExecStdout {
			var d agentproto.ExecData
			m.Decode(&d)
			out += string(d.Data)
		}
		if m.Type == agentproto.TypeExecFailed {
			var f agentproto.ExecFailed
			m.Decode(&f)
			t.Fatalf("exec failed: %+v", f)
		}
		if m.Type == agentproto.TypeExecExited {
			break
		}
	}
	if out != "99\n" {
		t.Errorf("ulimit -n = %q; want 99", out)
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
