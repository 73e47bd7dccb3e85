package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/msb-go/msb"
)

// TestSandboxOptions boots one sandbox with the guest options of
// run/create (--rlimit, -H, --label, --shell, --log-level, --entrypoint)
// and checks each from inside and from msb ls/inspect.
func TestSandboxOptions(t *testing.T) {
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	c.must(0, "create", "--rootfs", rootfs, "--name", "opts",
		"--rlimit", "nofile=256:512", "--rlimit", "core=unlimited",
		"-H", "optbox", "--label", "team=e2e", "--label", "tier=a",
		"--shell", "/bin/ash", "--log-level", "debug", "--entrypoint", "/bin/echo")

	t.Run("rlimit", func(t *testing.T) {
		out := string(c.must(0, "exec", "opts", "--", "sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c").stdout)
		if want := "256\n512\nunlimited\n"; out != want {
			t.Errorf("ulimit -n, -Hn, -c = %q; want %q", out, want)
		}
		// Per exec, under the sandbox's hard limit.
		out = string(c.must(0, "exec", "--rlimit", "nofile=100:200", "opts", "--", "sh", "-c", "ulimit -n; ulimit -Hn").stdout)
		if want := "100\n200\n"; out != want {
			t.Errorf("exec --rlimit: ulimit -n, -Hn = %q; want %q", out, want)
		}
	})
	t.Run("hostname", func(t *testing.T) {
		out := string(c.must(0, "exec", "opts", "--", "sh", "-c", "hostname; cat /etc/hostname; grep -c optbox /etc/hosts").stdout)
		if want := "optbox\noptbox\n"; !strings.HasPrefix(out, want) || strings.HasSuffix(out, "\n0\n") {
			t.Errorf("hostname, /etc/hostname, /etc/hosts lines = %q; want optbox twice and an /etc/hosts entry", out)
		}
	})
	t.Run("labels", func(t *testing.T) {
		var list []struct {
			Name   string
			Labels map[string]string
		}
		r := c.must(0, "ls", "--format", "json", "--label", "team=e2e", "--label", "tier=a")
		if err := json.Unmarshal(r.stdout, &list); err != nil {
			t.Fatalf("ls json: %v\n%s", err, r.stdout)
		}
		if len(list) != 1 || list[0].Name != "opts" || list[0].Labels["team"] != "e2e" || list[0].Labels["tier"] != "a" {
			t.Errorf("ls --label team=e2e --label tier=a = %+v; want opts with both labels", list)
		}
		r = c.must(0, "ls", "--format", "json", "--label", "team=e2e", "--label", "tier=b")
		if strings.Contains(string(r.stdout), `"opts"`) {
			t.Errorf("ls with a label that does not match lists opts:\n%s", r.stdout)
		}
		if out := string(c.must(0, "ls").stdout); !strings.Contains(out, "LABELS") || !strings.Contains(out, "team=e2e,tier=a") {
			t.Errorf("ls table has no labels:\n%s", out)
		}
	})
	t.Run("inspect", func(t *testing.T) {
		var in struct {
			Config struct {
				Command  []string          `json:"command"`
				Labels   map[string]string `json:"labels"`
				Hostname string            `json:"hostname"`
				Shell    string            `json:"shell"`
				LogLevel string            `json:"log_level"`
				Rlimits  []string          `json:"rlimits"`
			}
		}
		r := c.must(0, "inspect", "--format", "json", "opts")
		if err := json.Unmarshal(r.stdout, &in); err != nil {
			t.Fatalf("inspect json: %v\n%s", err, r.stdout)
		}
		cf := in.Config
		if !slices.Equal(cf.Command, []string{"/bin/echo"}) || cf.Labels["team"] != "e2e" || cf.Hostname != "optbox" ||
			cf.Shell != "/bin/ash" || cf.LogLevel != "debug" || !slices.Contains(cf.Rlimits, "nofile=256:512") {
			t.Errorf("inspect config = %+v", cf)
		}
	})
	t.Run("log level", func(t *testing.T) {
		// Only a debug level lets the sandbox process's debug lines through.
		if out := string(c.must(0, "logs", "--source", "system", "opts").stdout); !strings.Contains(out, "level=DEBUG") {
			t.Errorf("--log-level debug: no debug line in the system log:\n%s", out)
		}
	})
	t.Run("shell", func(t *testing.T) {
		r, err := c.run(t.Context(), []byte("echo \"shell=$0\"\n"), "shell", "opts")
		if err != nil || !strings.Contains(string(r.stdout), "shell=/bin/ash") {
			t.Errorf("msb shell (piped) = %q, %v; want the sandbox's shell /bin/ash", r.stdout, err)
		}
	})
	t.Run("sdk", func(t *testing.T) {
		t.Setenv("MSB_PATH", c.bin)
		t.Setenv("MSB_HOME", c.home)
		ctx := t.Context()
		sb, err := msb.Get(ctx, "opts")
		if err != nil {
			t.Fatal(err)
		}
		defer sb.Close()
		if res, err := sb.Shell(ctx, `echo "$0"`); err != nil || string(res.Stdout) != "/bin/ash\n" {
			t.Errorf("Shell = %v, %v; want the sandbox's shell /bin/ash", res, err)
		}
		res, err := sb.Exec(ctx, "sh", []string{"-c", "ulimit -n; ulimit -Hn"}, msb.WithExecRlimit("nofile", 50, 60))
		if err != nil || string(res.Stdout) != "50\n60\n" {
			t.Errorf("Exec with WithExecRlimit(nofile, 50, 60) = %v, %v; want 50 and 60", res, err)
		}
		if _, err := sb.Exec(ctx, "true", nil, msb.WithExecRlimit("nofiles", 1, 1)); err == nil {
			t.Error("WithExecRlimit(nofiles) = nil error; want an unknown resource")
		}
		list, err := msb.List(ctx, msb.WithLabelSelector(map[string]string{"tier": "a"}))
		if err != nil || len(list) != 1 || list[0].Name != "opts" || list[0].Labels["team"] != "e2e" {
			t.Errorf("List(WithLabelSelector(tier=a)) = %+v, %v; want opts with its labels", list, err)
		}
		if list, err := msb.List(ctx, msb.WithLabelSelector(map[string]string{"tier": "z"})); err != nil || len(list) != 0 {
			t.Errorf("List(WithLabelSelector(tier=z)) = %+v, %v; want none", list, err)
		}
	})
	t.Run("reuse refuses creation flags", func(t *testing.T) {
		r := c.must(1, "run", "--rootfs", rootfs, "--name", "opts", "-H", "other", "--", "true")
		if !strings.Contains(string(r.stderr), "--hostname") || !strings.Contains(string(r.stderr), "--replace") {
			t.Errorf("run on an existing name with -H: stderr %q; want it to name --hostname and suggest --replace", r.stderr)
		}
	})
	t.Run("entrypoint", func(t *testing.T) {
		// Docker semantics: CMD after -- becomes the entrypoint's arguments.
		out := string(c.must(0, "run", "--rootfs", rootfs, "--entrypoint", "/bin/echo", "--", "hello", "entry").stdout)
		if out != "hello entry\n" {
			t.Errorf("run --entrypoint /bin/echo -- hello entry = %q; want %q", out, "hello entry\n")
		}
	})
}

// TestSandboxInit runs a tiny init script as PID 1 (--init) and checks
// that the agent still serves beside it and that stop ends the VM.
func TestSandboxInit(t *testing.T) {
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	script := filepath.Join(t.TempDir(), "myinit")
	body := `#!/bin/sh
echo "$MYINIT_GREETING $*" > /run/myinit.out
trap 'echo term >> /run/myinit.out' TERM
while :; do sleep 1; done
`
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	c.must(0, "create", "--rootfs", rootfs, "--name", "init1", "--copy", script+":/sbin/myinit",
		"--init", "/sbin/myinit", "--init-arg", "one", "--init-env", "MYINIT_GREETING=hi")
	// The agent can serve before the init's first line ran: poll.
	var out string
	for deadline := time.Now().Add(15 * time.Second); ; {
		out = string(c.must(0, "exec", "init1", "--", "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline; echo; cat /run/myinit.out; echo agent=$PPID").stdout)
		if strings.Contains(out, "hi one") || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if !strings.Contains(out, "/sbin/myinit one") || !strings.Contains(out, "hi one") {
		t.Errorf("PID 1 cmdline and its output = %q; want /sbin/myinit one and \"hi one\"", out)
	}
	if strings.Contains(out, "agent=1\n") {
		t.Errorf("exec'd command's parent is PID 1; want the agent's child:\n%s", out)
	}
	start := time.Now()
	c.must(0, "stop", "init1")
	deadline := time.Now().Add(30 * time.Second)
	for c.ls()["init1"].Status == "Running" {
		if time.Now().After(deadline) {
			t.Fatalf("init1 still running 30 s after stop")
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("stop with an init took %v", time.Since(start))
}

// TestSandboxInitAuto: --init auto finds the image's /sbin/init (busybox's
// here) and makes it PID 1; stop still ends the VM.
func TestSandboxInitAuto(t *testing.T) {
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	c.must(0, "create", "--rootfs", rootfs, "--name", "init2", "--init", "auto")
	out := string(c.must(0, "exec", "init2", "--", "cat", "/proc/1/comm").stdout)
	if out != "init\n" {
		t.Errorf("PID 1 is %q; want init (busybox's /sbin/init)", out)
	}
	start := time.Now()
	c.must(0, "stop", "init2")
	deadline := time.Now().Add(30 * time.Second)
	for c.ls()["init2"].Status == "Running" {
		if time.Now().After(deadline) {
			t.Fatalf("init2 still running 30 s after stop")
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("stop with busybox init took %v", time.Since(start))
}
