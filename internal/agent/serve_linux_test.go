package agent

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/agentproto"
)

// helperEnv makes the test binary act as a child program (see TestMain).
const helperEnv = "AGENT_TEST_HELPER"

// TestMain lets the test binary re-execute itself as a child that writes a
// deterministic byte stream: AGENT_TEST_HELPER=output:<bytes>:<seed>.
func TestMain(m *testing.M) {
	runShimIfRequested()
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(runHelper(h))
	}
	os.Exit(m.Run())
}

func runHelper(spec string) int {
	f := strings.Split(spec, ":")
	if len(f) != 3 || f[0] != "output" {
		fmt.Fprintf(os.Stderr, "bad helper spec %q\n", spec)
		return 2
	}
	n, _ := strconv.ParseInt(f[1], 10, 64)
	seed, _ := strconv.ParseUint(f[2], 10, 64)
	if _, err := io.Copy(os.Stdout, io.LimitReader(newStream(seed), n)); err != nil {
		return 1
	}
	return 0
}

// newStream returns an endless deterministic pseudo-random byte stream.
func newStream(seed uint64) io.Reader {
	return &chachaReader{r: rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})}
}

type chachaReader struct{ r *rand.ChaCha8 }

func (c *chachaReader) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestReady(t *testing.T) {
	c := startServe(t, ServeOptions{InitTime: 5})
	if c.ready.ProtocolVersion != agentproto.ProtocolVersion {
		t.Errorf("protocol version = %d; want %d", c.ready.ProtocolVersion, agentproto.ProtocolVersion)
	}
	if c.ready.InitTimeNs != 5 || c.ready.ReadyTimeNs == 0 || c.ready.BootTimeNs != 0 {
		t.Errorf("times = %d/%d/%d; want 0/5/>0", c.ready.BootTimeNs, c.ready.InitTimeNs, c.ready.ReadyTimeNs)
	}
	if !c.ready.Has(agentproto.CapExecPTY) || !c.ready.Has(agentproto.CapFs) {
		t.Errorf("capabilities = %v; want exec.pty and fs", c.ready.Capabilities)
	}
}

func TestExecExitCodes(t *testing.T) {
	c := startServe(t, ServeOptions{Env: []string{"PATH=" + os.Getenv("PATH")}})
	tests := []struct {
		name       string
		cmd        string
		args       []string
		wantCode   int32
		wantStdout string
		wantStderr string
	}{
		{name: "true", cmd: "true", wantCode: 0},
		{name: "false", cmd: "false", wantCode: 1},
		{name: "exit 42", cmd: "sh", args: []string{"-c", "exit 42"}, wantCode: 42},
		{name: "stdout and stderr", cmd: "sh", args: []string{"-c", "echo out; echo err >&2; exit 3"}, wantCode: 3, wantStdout: "out\n", wantStderr: "err\n"},
		{name: "absolute path", cmd: "/bin/echo", args: []string{"a", "b"}, wantStdout: "a b\n"},
		{name: "killed by itself", cmd: "sh", args: []string{"-c", "kill -9 $$"}, wantCode: 128 + 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := c.exec(agentproto.ExecRequest{Cmd: tc.cmd, Args: tc.args})
			if r.failed != nil {
				t.Fatalf("failed: %+v", r.failed)
			}
			if r.pid == 0 {
				t.Errorf("no started frame with a pid")
			}
			if r.code != tc.wantCode || string(r.stdout) != tc.wantStdout || string(r.stderr) != tc.wantStderr {
				t.Errorf("got %v; want code %d stdout %q stderr %q", r, tc.wantCode, tc.wantStdout, tc.wantStderr)
			}
		})
	}
}

func TestExecSignal(t *testing.T) {
	c := startServe(t, ServeOptions{Env: []string{"PATH=" + os.Getenv("PATH")}})
	for _, tc := range []struct {
		sig  unix.Signal
		want int32
	}{{unix.SIGKILL, 128 + 9}, {unix.SIGTERM, 128 + 15}} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			// The signal goes to the process group: the shell's child
			// sleep must die too, or the session would wait for it.
			id, ch := c.start(agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "sleep 100; echo survived"}})
			waitStarted(t, ch)
			c.send(id, agentproto.TypeExecSignal, agentproto.ExecSignal{Signal: int32(tc.sig)})
			r := collect(t, ch, 10*time.Second)
			if r.code != tc.want || len(r.stdout) != 0 {
				t.Errorf("got %v; want code %d and no output", r, tc.want)
			}
		})
	}
}

func TestExecStdinEOF(t *testing.T) {
	c := startServe(t, ServeOptions{Env: []string{"PATH=" + os.Getenv("PATH")}})
	id, ch := c.start(agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "cat"})
	c.send(id, agentproto.TypeExecStdin, agentproto.ExecData{Data: []byte("hello ")})
	c.send(id, agentproto.TypeExecStdin, agentproto.ExecData{Data: []byte("world")})
	c.send(id, agentproto.TypeExecStdin, agentproto.ExecData{})
	r := collect(t, ch, 10*time.Second)
	if r.code != 0 || string(r.stdout) != "hello world" {
		t.Errorf("got %v; want code 0 stdout %q", r, "hello world")
	}
}

func TestExecLargeOutput(t *testing.T) {
	size := int64(100 << 20)
	if testing.Short() {
		size = 8 << 20
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := startServe(t, ServeOptions{})
	want := sha256.New()
	io.Copy(want, io.LimitReader(newStream(7), size))

	_, ch := c.start(agentproto.TypeExecRequest, agentproto.ExecRequest{
		Cmd: exe,
		Env: []string{fmt.Sprintf("%s=output:%d:7", helperEnv, size)},
	})
	got := sha256.New()
	var n int64
	deadline := time.After(5 * time.Minute)
	for done := false; !done; {
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatal("session ended without exited")
			}
			switch m.Type {
			case agentproto.TypeExecStarted:
			case agentproto.TypeExecStdout:
				var d agentproto.ExecData
				mustDecode(t, m, &d)
				if len(d.Data) > agentproto.MaxExecChunk {
					t.Fatalf("chunk of %d bytes", len(d.Data))
				}
				got.Write(d.Data)
				n += int64(len(d.Data))
			case agentproto.TypeExecExited:
				var e agentproto.ExecExited
				mustDecode(t, m, &e)
				if e.Code != 0 {
					t.Errorf("exit code %d; want 0", e.Code)
				}
				done = true
			default:
				t.Fatalf("unexpected %s", m.Type)
			}
		case <-deadline:
			t.Fatalf("timeout after %d bytes", n)
		}
	}
	if n != size {
		t.Errorf("got %d bytes; want %d", n, size)
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Errorf("checksum of the output differs from the child's stream")
	}
}

func TestExecPTY(t *testing.T) {
	c := startServe(t, ServeOptions{Env: []string{"PATH=" + os.Getenv("PATH")}})
	t.Run("size", func(t *testing.T) {
		r := c.exec(agentproto.ExecRequest{Cmd: "stty", Args: []string{"size"}, TTY: true, Rows: 40, Cols: 120})
		if r.code != 0 || strings.TrimSpace(string(r.stdout)) != "40 120" {
			t.Errorf("got %v; want stdout \"40 120\"", r)
		}
	})
	t.Run("default size and TERM", func(t *testing.T) {
		r := c.exec(agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "stty size; echo $TERM; test -t 0 && echo tty"}, TTY: true})
		want := "24 80\r\nxterm\r\ntty\r\n"
		if r.code != 0 || string(r.stdout) != want {
			t.Errorf("got %v; want stdout %q", r, want)
		}
	})
	t.Run("resize", func(t *testing.T) {
		id, ch := c.start(agentproto.TypeExecRequest, agentproto.ExecRequest{
			Cmd: "sh", Args: []string{"-c", "stty -echo; echo ready; read x; stty size"}, TTY: true, Rows: 40, Cols: 120,
		})
		waitStarted(t, ch)
		var out []byte
		for !bytes.Contains(out, []byte("ready")) {
			m := <-ch
			if m.Type != agentproto.TypeExecStdout {
				t.Fatalf("unexpected %s before ready", m.Type)
			}
			var d agentproto.ExecData
			mustDecode(t, m, &d)
			out = append(out, d.Data...)
		}
		c.send(id, agentproto.TypeExecResize, agentproto.ExecResize{Rows: 50, Cols: 100})
		c.send(id, agentproto.TypeExecStdin, agentproto.ExecData{Data: []byte("go\n")})
		r := collect(t, ch, 10*time.Second)
		if r.code != 0 || strings.TrimSpace(string(r.stdout)) != "50 100" {
			t.Errorf("got %v; want stdout \"50 100\"", r)
		}
	})
	t.Run("signal reaches the foreground group", func(t *testing.T) {
		id, ch := c.start(agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "sleep", Args: []string{"100"}, TTY: true})
		waitStarted(t, ch)
		c.send(id, agentproto.TypeExecSignal, agentproto.ExecSignal{Signal: int32(unix.SIGKILL)})
		if r := collect(t, ch, 10*time.Second); r.code != 137 {
			t.Errorf("got %v; want code 137", r)
		}
	})
}

func TestExecFailures(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "notexec")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	badFormat := filepath.Join(dir, "badformat")
	os.WriteFile(badFormat, []byte("\x00\x01garbage"), 0o755)
	c := startServe(t, ServeOptions{Env: []string{"PATH=" + os.Getenv("PATH")}})
	tests := []struct {
		name      string
		req       agentproto.ExecRequest
		wantKind  string
		wantErrno int32 // 0 = none
		wantName  string
		wantMsg   string // prefix
	}{
		{
			name:     "not found",
			req:      agentproto.ExecRequest{Cmd: "no-such-command-msb"},
			wantKind: agentproto.FailNotFound, wantErrno: 2, wantName: "ENOENT",
			wantMsg: `spawn "no-such-command-msb": no such file or directory`,
		},
		{
			name:     "absolute path not found",
			req:      agentproto.ExecRequest{Cmd: "/no/such/file"},
			wantKind: agentproto.FailNotFound, wantErrno: 2, wantName: "ENOENT",
			wantMsg: `spawn "/no/such/file": no such file or directory`,
		},
		{
			name:     "bad cwd missing",
			req:      agentproto.ExecRequest{Cmd: "true", Cwd: strp("/no/such/dir")},
			wantKind: agentproto.FailBadCwd, wantErrno: 2, wantName: "ENOENT",
			wantMsg: `spawn "true": `,
		},
		{
			name:     "bad cwd is a file",
			req:      agentproto.ExecRequest{Cmd: "true", Cwd: strp(notExec)},
			wantKind: agentproto.FailBadCwd, wantErrno: 20, wantName: "ENOTDIR",
			wantMsg: `spawn "true": `,
		},
		{
			name:     "not executable",
			req:      agentproto.ExecRequest{Cmd: notExec},
			wantKind: agentproto.FailPermission, wantErrno: 13, wantName: "EACCES",
			wantMsg: fmt.Sprintf("spawn %q: permission denied", notExec),
		},
		{
			name:     "exec format error",
			req:      agentproto.ExecRequest{Cmd: badFormat},
			wantKind: agentproto.FailNotExecutable, wantErrno: 8, wantName: "ENOEXEC",
			wantMsg: fmt.Sprintf("spawn %q: exec format error", badFormat),
		},
		{
			name:     "directory",
			req:      agentproto.ExecRequest{Cmd: dir},
			wantKind: agentproto.FailPermission, wantErrno: 13, wantName: "EACCES",
			wantMsg: fmt.Sprintf("spawn %q: ", dir),
		},
		{
			name:     "unknown user",
			req:      agentproto.ExecRequest{Cmd: "true", User: strp("no-such-user-msb")},
			wantKind: agentproto.FailUserSetupFailed,
			wantMsg:  `spawn "true": user "no-such-user-msb": unknown user`,
		},
		{
			name:     "NUL in argument",
			req:      agentproto.ExecRequest{Cmd: "echo", Args: []string{"a\x00b"}},
			wantKind: agentproto.FailBadArgs,
			wantMsg:  `spawn "echo": argument contains NUL`,
		},
		{
			name:     "bad rlimit",
			req:      agentproto.ExecRequest{Cmd: "true", Rlimits: []agentproto.Rlimit{{Resource: "bogus", Soft: 1, Hard: 1}}},
			wantKind: agentproto.FailBadArgs,
			wantMsg:  `spawn "true": rlimit "bogus": unknown resource`,
		},
		{
			name:     "rlimit soft above hard",
			req:      agentproto.ExecRequest{Cmd: "true", Rlimits: []agentproto.Rlimit{{Resource: "nofile", Soft: 2, Hard: 1}}},
			wantKind: agentproto.FailBadArgs,
			wantMsg:  `spawn "true": rlimit nofile: soft limit 2 above hard limit 1`,
		},
		{
			name:     "rlimit with missing command",
			req:      agentproto.ExecRequest{Cmd: "/no/such/file", Rlimits: []agentproto.Rlimit{{Resource: "nofile", Soft: 64, Hard: 64}}},
			wantKind: agentproto.FailNotFound, wantErrno: 2, wantName: "ENOENT",
			wantMsg: `spawn "/no/such/file": no such file or directory`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := c.exec(tc.req)
			f := r.failed
			if f == nil {
				t.Fatalf("got %v; want failed %s", r, tc.wantKind)
			}
			if f.Kind != tc.wantKind {
				t.Errorf("kind = %q; want %q (%+v)", f.Kind, tc.wantKind, f)
			}
			if !strings.HasPrefix(f.Message, tc.wantMsg) {
				t.Errorf("message = %q; want prefix %q", f.Message, tc.wantMsg)
			}
			if tc.wantErrno == 0 {
				if f.Errno != nil {
					t.Errorf("errno = %d; want none", *f.Errno)
				}
				return
			}
			if f.Errno == nil || *f.Errno != tc.wantErrno || f.ErrnoName == nil || *f.ErrnoName != tc.wantName {
				t.Errorf("errno = %v %v; want %d %s", deref(f.Errno), deref(f.ErrnoName), tc.wantErrno, tc.wantName)
			}
		})
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestExecEnv(t *testing.T) {
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	os.WriteFile(passwd, []byte("root:x:0:0:root:/root-home:/bin/sh\n"), 0o644)
	hostPath := os.Getenv("PATH")
	c := startServe(t, ServeOptions{
		Env:        []string{"PATH=" + hostPath, "A=default", "B=default"},
		passwdFile: passwd,
	})
	tests := []struct {
		name string
		req  agentproto.ExecRequest
		want string
	}{
		{
			name: "overlay and PATH",
			req:  agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", `echo "$A $B $C $PATH $HOME"`}, Env: []string{"B=req", "C=new"}},
			want: fmt.Sprintf("default req new %s:%s /root-home\n", scriptsDir, hostPath),
		},
		{
			name: "request HOME wins",
			req:  agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", `echo "$HOME"`}, Env: []string{"HOME=/x"}},
			want: "/x\n",
		},
		{
			name: "request PATH gets scripts too",
			req:  agentproto.ExecRequest{Cmd: "/bin/sh", Args: []string{"-c", `echo "$PATH"`}, Env: []string{"PATH=/bin:/usr/bin"}},
			want: scriptsDir + ":/bin:/usr/bin\n",
		},
		{
			name: "cwd",
			req:  agentproto.ExecRequest{Cmd: "pwd", Cwd: strp(dir)},
			want: dir + "\n",
		},
		{
			name: "rlimit",
			req: agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "ulimit -n; ulimit -Hn"},
				Rlimits: []agentproto.Rlimit{{Resource: "nofile", Soft: 64, Hard: 128}}},
			want: "64\n128\n",
		},
		{
			name: "rlimits in a tty",
			req: agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "ulimit -n; ulimit -Hn"}, TTY: true,
				Rlimits: []agentproto.Rlimit{{Resource: "nofile", Soft: 64, Hard: 128}}},
			want: "64\r\n128\r\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := c.exec(tc.req)
			if r.failed != nil || r.code != 0 || string(r.stdout) != tc.want {
				t.Errorf("got %v; want stdout %q", r, tc.want)
			}
		})
	}
}

func TestBuildEnv(t *testing.T) {
	tests := []struct {
		name string
		base []string
		req  []string
		home string
		tty  bool
		want []string
	}{
		{
			name: "no PATH anywhere",
			want: []string{"PATH=" + scriptsDir + ":" + defaultPath, "HOME=/"},
		},
		{
			name: "PATH already has scripts",
			base: []string{"PATH=" + scriptsDir + ":/bin", "HOME=/h"},
			want: []string{"PATH=" + scriptsDir + ":/bin", "HOME=/h"},
		},
		{
			name: "passwd HOME replaces default HOME",
			base: []string{"HOME=/", "PATH=/bin"},
			home: "/root",
			want: []string{"HOME=/root", "PATH=" + scriptsDir + ":/bin"},
		},
		{
			name: "tty TERM",
			base: []string{"TERM=linux", "PATH=/bin"},
			tty:  true,
			home: "/h",
			want: []string{"TERM=xterm", "PATH=" + scriptsDir + ":/bin", "HOME=/h"},
		},
		{
			name: "tty request TERM wins",
			base: []string{"PATH=/bin"},
			req:  []string{"TERM=vt100", "HOME=/q"},
			tty:  true,
			home: "/h",
			want: []string{"PATH=" + scriptsDir + ":/bin", "TERM=vt100", "HOME=/q"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := buildEnv(tc.base, tc.req, tc.home, tc.tty)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("buildEnv mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestExecUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("switching users needs root")
	}
	c := startServe(t, ServeOptions{Env: []string{"PATH=" + os.Getenv("PATH")}})
	for _, tc := range []struct {
		user string
		want string
	}{
		{"65534", "65534\n"},
		{"65534:65534", "65534\n"},
		{"nobody", "65534\n"},
		{"0", "0\n"},
	} {
		t.Run(tc.user, func(t *testing.T) {
			r := c.exec(agentproto.ExecRequest{Cmd: "id", Args: []string{"-u"}, User: strp(tc.user)})
			if r.failed != nil || r.code != 0 || string(r.stdout) != tc.want {
				t.Errorf("got %v; want stdout %q", r, tc.want)
			}
		})
	}
	t.Run("default user", func(t *testing.T) {
		c := startServe(t, ServeOptions{Env: []string{"PATH=" + os.Getenv("PATH")}, DefaultUser: "65534:65534"})
		r := c.exec(agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "id -u; id -g; id -G"}})
		if want := "65534\n65534\n65534\n"; r.code != 0 || string(r.stdout) != want {
			t.Errorf("got %v; want stdout %q", r, want)
		}
	})
}

func TestConcurrentSessions(t *testing.T) {
	c := startServe(t, ServeOptions{Env: []string{"PATH=" + os.Getenv("PATH")}})
	const n = 8
	var wg sync.WaitGroup
	results := make([]execResult, n)
	chans := make([]<-chan agentproto.Message, n)
	for i := range n {
		_, chans[i] = c.start(agentproto.TypeExecRequest, agentproto.ExecRequest{
			Cmd: "sh", Args: []string{"-c", fmt.Sprintf("for j in 1 2 3; do echo %d-$j; sleep 0.05; done; exit %d", i, i)},
		})
	}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = collect(t, chans[i], 30*time.Second)
		}()
	}
	wg.Wait()
	for i, r := range results {
		want := fmt.Sprintf("%d-1\n%d-2\n%d-3\n", i, i, i)
		if r.code != int32(i) || string(r.stdout) != want {
			t.Errorf("session %d: got %v; want code %d stdout %q", i, r, i, want)
		}
	}
}

// A child that never reads its stdin must not stall other sessions, even
// when far more than a pipe buffer of stdin is queued for it.
func TestStdinNotReadDoesNotStall(t *testing.T) {
	c := startServe(t, ServeOptions{Env: []string{"PATH=" + os.Getenv("PATH")}})
	idA, chA := c.start(agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "sleep", Args: []string{"100"}})
	waitStarted(t, chA)
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	for range 4 {
		c.send(idA, agentproto.TypeExecStdin, agentproto.ExecData{Data: chunk})
	}
	start := time.Now()
	r := c.exec(agentproto.ExecRequest{Cmd: "echo", Args: []string{"ok"}})
	if r.code != 0 || string(r.stdout) != "ok\n" {
		t.Errorf("second session: got %v; want ok", r)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second session took %v", d)
	}
	c.send(idA, agentproto.TypeExecSignal, agentproto.ExecSignal{Signal: 9})
	if r := collect(t, chA, 10*time.Second); r.code != 137 {
		t.Errorf("first session: got %v; want code 137", r)
	}
}

// pidGone reports whether pid no longer exists (not even as a zombie).
func pidGone(pid int) bool {
	return unix.Kill(pid, 0) == unix.ESRCH
}

func TestDisconnectKillsSessions(t *testing.T) {
	for _, tty := range []bool{false, true} {
		t.Run(fmt.Sprintf("tty=%v", tty), func(t *testing.T) {
			c := startServe(t, ServeOptions{Env: []string{"PATH=" + os.Getenv("PATH")}})
			_, ch := c.start(agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "sleep", Args: []string{"100"}, TTY: tty})
			pid := int(waitStarted(t, ch))
			if pidGone(pid) {
				t.Fatalf("pid %d gone before disconnect", pid)
			}
			c.conn.Close()
			if err := c.waitServe(10 * time.Second); err != nil {
				t.Fatalf("Serve: %v", err)
			}
			if !pidGone(pid) {
				t.Errorf("pid %d still exists after the client disconnected", pid)
			}
		})
	}
}

func TestShutdown(t *testing.T) {
	called := make(chan struct{})
	c := startServe(t, ServeOptions{
		Env:      []string{"PATH=" + os.Getenv("PATH")},
		Shutdown: func() { close(called) },
	})
	_, term := c.start(agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "sleep", Args: []string{"100"}})
	termPid := int(waitStarted(t, term))
	_, stubborn := c.start(agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "trap '' TERM; echo trapped; sleep 100"}})
	stubbornPid := int(waitStarted(t, stubborn))
	for m := range stubborn {
		if m.Type == agentproto.TypeExecStdout {
			break
		}
	}
	start := time.Now()
	c.send(0, agentproto.TypeShutdown, nil)
	select {
	case <-called:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown not called")
	}
	if d := time.Since(start); d < shutdownGrace/2 {
		t.Errorf("shutdown took %v; the stubborn session should have used the grace period", d)
	}
	if r := collect(t, term, 5*time.Second); r.code != 128+15 {
		t.Errorf("sleep: got %v; want code 143", r)
	}
	if r := collect(t, stubborn, 5*time.Second); r.code != 128+9 {
		t.Errorf("stubborn: got %v; want code 137", r)
	}
	if err := c.waitServe(10 * time.Second); err != nil {
		t.Errorf("Serve: %v", err)
	}
	for _, pid := range []int{termPid, stubbornPid} {
		if !pidGone(pid) {
			t.Errorf("pid %d still exists", pid)
		}
	}
}

func TestHeartbeat(t *testing.T) {
	dir := t.TempDir()
	hb := filepath.Join(dir, "heartbeat.json")
	c := startServe(t, ServeOptions{Env: []string{"PATH=" + os.Getenv("PATH")}, HeartbeatPath: hb})
	read := func() heartbeat {
		t.Helper()
		data, err := os.ReadFile(hb)
		if err != nil {
			t.Fatalf("read heartbeat: %v", err)
		}
		var h heartbeat
		if err := json.Unmarshal(data, &h); err != nil {
			t.Fatalf("parse heartbeat %q: %v", data, err)
		}
		for _, s := range []string{h.Timestamp, h.LastActivity} {
			if _, err := time.Parse(time.RFC3339, s); err != nil {
				t.Errorf("time %q: %v", s, err)
			}
		}
		return h
	}
	var h heartbeat
	for deadline := time.Now().Add(5 * time.Second); ; {
		if _, err := os.Stat(hb); err == nil {
			h = read()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no heartbeat file")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if h.ActiveSessions != 0 {
		t.Errorf("active_sessions = %d; want 0", h.ActiveSessions)
	}
	id, ch := c.start(agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "sleep", Args: []string{"100"}})
	waitStarted(t, ch)
	time.Sleep(2200 * time.Millisecond)
	h = read()
	if h.ActiveSessions != 1 {
		t.Errorf("active_sessions = %d; want 1", h.ActiveSessions)
	}
	ts, _ := time.Parse(time.RFC3339, h.Timestamp)
	la, _ := time.Parse(time.RFC3339, h.LastActivity)
	if ts.Sub(la) > time.Second {
		t.Errorf("last_activity %s lags timestamp %s while a session runs", h.LastActivity, h.Timestamp)
	}
	c.send(id, agentproto.TypeExecSignal, agentproto.ExecSignal{Signal: 9})
	collect(t, ch, 10*time.Second)
	if _, err := os.Stat(filepath.Join(dir, "heartbeat.tmp")); err == nil {
		// The tmp file exists only between write and rename; a leftover
		// one would mean a failed rename.
		time.Sleep(100 * time.Millisecond)
		if _, err := os.Stat(filepath.Join(dir, "heartbeat.tmp")); err == nil {
			t.Errorf("heartbeat.tmp left behind")
		}
	}
}

func TestDuplicateSessionID(t *testing.T) {
	c := startServe(t, ServeOptions{Env: []string{"PATH=" + os.Getenv("PATH")}})
	id, ch := c.start(agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "sleep", Args: []string{"100"}})
	waitStarted(t, ch)
	// A second request with the same id is answered with failed on that id;
	// the test client routes it to the first session's channel.
	c.send(id, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "true"})
	r := collect(t, ch, 10*time.Second)
	if r.failed == nil || !strings.Contains(r.failed.Message, "already in use") {
		t.Errorf("got %v; want failed \"already in use\"", r)
	}
	c.send(id, agentproto.TypeExecSignal, agentproto.ExecSignal{Signal: 9})
}

// The id of a finished session is free as soon as its terminal frame
// arrives: the host may reuse it at once.
func TestSessionIDReuse(t *testing.T) {
	c := startServe(t, ServeOptions{Env: []string{"PATH=" + os.Getenv("PATH")}})
	for i := range 20 {
		r := collect(t, c.startID(7, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "echo", Args: []string{"x"}}), 10*time.Second)
		if r.failed != nil || string(r.stdout) != "x\n" {
			t.Fatalf("round %d: got %v", i, r)
		}
		resp, _ := readFsResponse(t, c.startID(7, agentproto.TypeFsRequest, agentproto.FsRequest{Op: agentproto.FsOp{Kind: agentproto.FsStat, Path: "/"}}))
		if !resp.OK {
			t.Fatalf("round %d: fs on a reused id: %s", i, errText(resp))
		}
	}
}

// TestExecExitWithBackgroundChild: a background child that keeps the
// command's stdout open must not hold the session past the command's exit
// (the readers stop lingerAfterExit after it): the exit is reported, with
// the output written before it, long before the child ends.
func TestExecExitWithBackgroundChild(t *testing.T) {
	c := startServe(t, ServeOptions{Env: []string{"PATH=" + os.Getenv("PATH")}})
	start := time.Now()
	_, ch := c.start(agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "sleep 5 & echo hi"}})
	r := collect(t, ch, 10*time.Second)
	took := time.Since(start)
	if r.code != 0 || string(r.stdout) != "hi\n" {
		t.Errorf("got %v; want code 0 stdout %q", r, "hi\n")
	}
	if took > 3*time.Second {
		t.Errorf("exit reported after %v; want it within lingerAfterExit (%v) of the exit, not when the background child ends", took, lingerAfterExit)
	}
}

// TestExecPTYExitWithBackgroundChild is TestExecExitWithBackgroundChild on
// a terminal: the background child holds the PTY's slave.
func TestExecPTYExitWithBackgroundChild(t *testing.T) {
	c := startServe(t, ServeOptions{Env: []string{"PATH=" + os.Getenv("PATH")}})
	start := time.Now()
	_, ch := c.start(agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", `trap "" HUP; sleep 5 & echo hi`}, TTY: true})
	r := collect(t, ch, 10*time.Second)
	took := time.Since(start)
	if r.code != 0 || !strings.Contains(string(r.stdout), "hi") {
		t.Errorf("got %v; want code 0 and %q on the terminal", r, "hi")
	}
	if took > 3*time.Second {
		t.Errorf("exit reported after %v; want it within lingerAfterExit (%v) of the exit, not when the background child ends", took, lingerAfterExit)
	}
}
