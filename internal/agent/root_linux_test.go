package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/agentproto"
)

// newExecRoot builds a root like a container's: the host's /usr bound in
// (merged-/usr symlinks for /bin and /lib), its own accounts, a marker, and
// a shell reachable only through an absolute symlink that resolves inside
// the root. Mounting needs root; the test is skipped without it.
func newExecRoot(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("exec roots mount /proc, /sys and /dev: needs root")
	}
	for _, p := range []string{"/bin", "/lib", "/lib64"} {
		if target, err := os.Readlink(p); err != nil || !strings.HasPrefix(target, "usr/") {
			t.Skipf("needs a merged-/usr host (%s)", p)
		}
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"usr", "etc", "work", "rootonly", "opt/bin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []string{"bin", "lib", "lib64"} {
		if err := os.Symlink("usr/"+l, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0::/root:/bin/sh\nalice:x:1234:4321::/work:/bin/sh\n",
		"etc/group":  "root:x:0:\nstaff:x:4321:\n",
		"etc/marker": "in the root\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sh, err := os.ReadFile("/usr/bin/dash")
	if err != nil {
		t.Skipf("needs /usr/bin/dash: %v", err)
	}
	if err := os.WriteFile(filepath.Join(root, "rootonly/sh"), sh, 0o755); err != nil {
		t.Fatal(err)
	}
	// Absolute: resolved against the guest's / it would not exist.
	if err := os.Symlink("/rootonly/sh", filepath.Join(root, "opt/bin/rsh")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("/usr", filepath.Join(root, "usr"), "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind /usr: %v", err)
	}
	t.Cleanup(func() {
		for _, m := range []string{"/etc/hostname", "/etc/resolv.conf", "/etc/hosts", "/dev", "/sys", "/proc", "/usr"} {
			_ = unix.Unmount(filepath.Join(root, m), unix.MNT_DETACH)
		}
	})
	return root
}

func TestExecRoot(t *testing.T) {
	root := newExecRoot(t)
	c := startServe(t, ServeOptions{Env: []string{"PATH=/usr/bin:/bin"}, HeartbeatPath: t.TempDir() + "/hb.json"})
	if !c.ready.Has(agentproto.CapExecRoot) {
		t.Fatalf("core.ready capabilities %v lack %s", c.ready.Capabilities, agentproto.CapExecRoot)
	}
	str := func(s string) *string { return &s }
	script := `echo "$(id -u):$(id -g) $(pwd) $HOME"; cat /etc/marker; readlink /proc/self/root; test -c /dev/null && echo dev; test -d /sys/kernel && echo sys`
	tests := []struct {
		name       string
		req        agentproto.ExecRequest
		wantOut    string
		wantFailed string // ExecFailed.Kind
		wantStage  string
	}{
		{
			name: "named user, cwd and files of the root",
			req: agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", script}, Root: str(root),
				User: str("alice"), Cwd: str("/work")},
			wantOut: "1234:4321 /work /work\nin the root\n/\ndev\nsys\n",
		},
		{
			name: "PATH lookup through an absolute symlink inside the root",
			req: agentproto.ExecRequest{Cmd: "rsh", Args: []string{"-c", "read l < /etc/marker; echo \"$l\""}, Root: str(root),
				Env: []string{"PATH=/opt/bin"}},
			wantOut: "in the root\n",
		},
		{
			name: "through the rlimit exec shim (/proc/self/exe inside the root)",
			req: agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "ulimit -n"}, Root: str(root),
				Rlimits: []agentproto.Rlimit{{Resource: "nofile", Soft: 77, Hard: 77}}},
			wantOut: "77\n",
		},
		{
			name:       "user unknown to the root",
			req:        agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "true"}, Root: str(root), User: str("bob")},
			wantFailed: agentproto.FailUserSetupFailed, wantStage: "user",
		},
		{
			name:       "cwd missing in the root",
			req:        agentproto.ExecRequest{Cmd: "sh", Root: str(root), Cwd: str("/nowhere")},
			wantFailed: agentproto.FailBadCwd, wantStage: "chdir",
		},
		{
			name:       "guest root refused",
			req:        agentproto.ExecRequest{Cmd: "true", Root: str("/")},
			wantFailed: agentproto.FailBadArgs, wantStage: "root",
		},
		{
			name:       "relative root refused",
			req:        agentproto.ExecRequest{Cmd: "true", Root: str("rootfs")},
			wantFailed: agentproto.FailBadArgs, wantStage: "root",
		},
		{
			name:       "missing root",
			req:        agentproto.ExecRequest{Cmd: "true", Root: str(root + "-missing")},
			wantFailed: agentproto.FailBadArgs, wantStage: "root",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := c.exec(tc.req)
			if tc.wantFailed != "" {
				if r.failed == nil || r.failed.Kind != tc.wantFailed || r.failed.Stage == nil || *r.failed.Stage != tc.wantStage {
					t.Fatalf("got %+v (failed %+v); want failed %s at %s", r, r.failed, tc.wantFailed, tc.wantStage)
				}
				return
			}
			if r.failed != nil || r.code != 0 || string(r.stdout) != tc.wantOut {
				t.Fatalf("got code %d stdout %q stderr %q failed %+v; want %q", r.code, r.stdout, r.stderr, r.failed, tc.wantOut)
			}
		})
	}
	// Its own mount namespace: a mount in it is not the guest's.
	ns, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	r := c.exec(agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "readlink /proc/self/ns/mnt; mount -t tmpfs msb-ns-test /work && grep -c msb-ns-test /proc/self/mounts"}, Root: str(root)})
	out := strings.Fields(string(r.stdout))
	if r.code != 0 || len(out) != 2 || out[0] == ns || out[1] != "1" {
		t.Errorf("mount namespace: got %q (stderr %q, code %d); want another namespace than %s holding the tmpfs", r.stdout, r.stderr, r.code, ns)
	}
	if b, err := os.ReadFile("/proc/self/mounts"); err != nil || strings.Contains(string(b), "msb-ns-test") {
		t.Errorf("the container's mount leaked into agentd's namespace (%v)", err)
	}
	// The guest's network files are bound over the root's.
	for _, name := range rootFiles {
		want, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		got, err := os.ReadFile(filepath.Join(root, name))
		if err != nil || string(got) != string(want) {
			t.Errorf("%s in the root = %q, %v; want the guest's", name, got, err)
		}
	}
}
