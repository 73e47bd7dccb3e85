package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// hostCmdlinesWith returns the host processes whose command line holds s.
func hostCmdlinesWith(s string) []string {
	paths, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var hits []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), s) {
			hits = append(hits, p+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return hits
}

// TestCLI14: exec --timeout, -e KEY from the host environment, inspect
// --format json and run -d.
func TestCLI14(t *testing.T) {
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	secret := "v-" + strings.ReplaceAll(t.Name(), "/", "-") + "-" + time.Now().Format("150405.000000")
	c.env = append(c.env, "CLI14_BOOT="+secret+"-boot", "CLI14_EXEC="+secret+"-exec")

	c.must(0, "create", "--rootfs", rootfs, "--name", "t14", "-e", "CLI14_BOOT")
	if hits := hostCmdlinesWith(secret); len(hits) > 0 {
		t.Errorf("the -e value is on a host command line:\n%s", strings.Join(hits, "\n"))
	}

	// -e KEY of exec, checked while the command runs.
	var wg sync.WaitGroup
	var r result
	wg.Go(func() {
		r = c.must(0, "exec", "-e", "CLI14_EXEC", "t14", "--", "sh", "-c", `echo "$CLI14_BOOT"; echo "$CLI14_EXEC"; sleep 2`)
	})
	time.Sleep(time.Second)
	if hits := hostCmdlinesWith(secret); len(hits) > 0 {
		t.Errorf("the -e value is on a host command line during exec:\n%s", strings.Join(hits, "\n"))
	}
	wg.Wait()
	if want := secret + "-boot\n" + secret + "-exec\n"; string(r.stdout) != want {
		t.Errorf("printenv = %q; want %q", r.stdout, want)
	}

	// --timeout: killed, exit 124, and the sandbox keeps running.
	start := time.Now()
	r = c.must(124, "exec", "--timeout", "1s", "t14", "--", "sleep", "30")
	if took := time.Since(start); took > 6*time.Second {
		t.Errorf("exec --timeout 1s took %v; want about 1 s (at most 5 s more)", took)
	}
	if !strings.Contains(string(r.stderr), "error: command timed out after 1s") {
		t.Errorf("exec --timeout stderr = %q", r.stderr)
	}
	// The process group went: a background child of the command too.
	c.must(124, "exec", "--timeout", "1s", "t14", "--", "sh", "-c", "sleep 300 & sleep 301")
	if out := string(c.must(0, "exec", "t14", "--", "ps").stdout); strings.Contains(out, "sleep 30") {
		t.Errorf("sleeps survived the timeout:\n%s", out)
	}
	if s := c.ls()["t14"]; s.Status != "Running" {
		t.Errorf("after a timeout the sandbox is %q; want Running", s.Status)
	}

	// inspect --format json parses, names the status, lists env names only.
	r = c.must(0, "inspect", "--format", "json", "t14")
	var in struct {
		Name   string
		Status string
		PID    int
		Config struct {
			Rootfs  string
			EnvKeys []string `json:"env_keys"`
		}
	}
	if err := json.Unmarshal(r.stdout, &in); err != nil {
		t.Fatalf("inspect json: %v\n%s", err, r.stdout)
	}
	if in.Status != "Running" || in.PID == 0 || in.Config.Rootfs == "" || !strings.Contains(strings.Join(in.Config.EnvKeys, " "), "CLI14_BOOT") {
		t.Errorf("inspect = %+v", in)
	}
	if strings.Contains(string(r.stdout), secret) {
		t.Errorf("inspect shows an env value:\n%s", r.stdout)
	}
	c.must(0, "inspect", "t14")

	// run -d -- CMD: returns once CMD runs; CMD keeps running, its output in
	// the logs.
	start = time.Now()
	r = c.must(0, "run", "--rootfs", rootfs, "--name", "bg14", "-d", "--", "sh", "-c", "echo bg-out; exec sleep 600")
	t.Logf("run -d took %v", time.Since(start))
	if strings.TrimSpace(string(r.stdout)) != "bg14" {
		t.Errorf("run -d stdout = %q; want the name", r.stdout)
	}
	if s := c.ls()["bg14"]; s.Status != "Running" {
		t.Errorf("after run -d the sandbox is %q; want Running", s.Status)
	}
	// busybox sh execs sleep through /proc/self/exe: ps may catch it
	// between the two.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := string(c.must(0, "exec", "bg14", "--", "ps").stdout)
		if strings.Contains(out, "sleep 600") {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the background command is not running:\n%s", out)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		if strings.Contains(string(c.must(0, "logs", "bg14").stdout), "bg-out") {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the background command's output is not in msb logs")
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// status shows the running ones; ls --stopped none of them.
	if out := string(c.must(0, "ps").stdout); !strings.Contains(out, "bg14") || !strings.Contains(out, "t14") {
		t.Errorf("ps:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := c.run(ctx, nil, "ls", "--stopped")
	if err != nil || strings.Contains(string(r.stdout), "bg14") {
		t.Errorf("ls --stopped: %v\n%s", err, r.stdout)
	}

	// run -d without a command returns as soon as the sandbox runs.
	c.must(0, "run", "--rootfs", rootfs, "--name", "idle14", "-d")
	if s := c.ls()["idle14"]; s.Status != "Running" {
		t.Errorf("after run -d the sandbox is %q; want Running", s.Status)
	}
}
