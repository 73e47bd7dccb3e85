package guestkernel

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// parsedEntry is what readNewc recovers from one header.
type parsedEntry struct {
	Name  string
	Mode  uint32
	Data  string
	RMaj  uint32
	RMin  uint32
	Nlink uint32
}

// readNewc is an independent newc parser used to check the writer.
func readNewc(t *testing.T, b []byte) []parsedEntry {
	t.Helper()
	var out []parsedEntry
	off := 0
	align := func() { off = (off + 3) &^ 3 }
	for {
		if off+110 > len(b) {
			t.Fatalf("truncated header at %d", off)
		}
		h := string(b[off : off+110])
		if h[:6] != "070701" {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(h[6+8*i:14+8*i], 16, 32)
			if err != nil {
				t.Fatalf("field %d: %v", i, err)
			}
			return uint32(v)
		}
		mode, nlink, size, rmaj, rmin, namesize := field(1), field(4), field(6), field(9), field(10), field(11)
		off += 110
		name := string(b[off : off+int(namesize)-1])
		if b[off+int(namesize)-1] != 0 {
			t.Fatalf("name %q not NUL-terminated", name)
		}
		off += int(namesize)
		align()
		data := string(b[off : off+int(size)])
		off += int(size)
		align()
		if name == "TRAILER!!!" {
			if len(b)%512 != 0 {
				t.Errorf("archive length %d not a multiple of 512", len(b))
			}
			return out
		}
		out = append(out, parsedEntry{name, mode, data, rmaj, rmin, nlink})
	}
}

func TestCPIOWriter(t *testing.T) {
	tests := []struct {
		name    string
		entries []Entry
		want    []parsedEntry
		wantErr string
	}{
		{
			name: "every type",
			entries: []Entry{
				{Name: "bin", Mode: fs.ModeDir | 0o755},
				{Name: "/bin/tool", Mode: 0o755, Data: []byte("abc")},
				{Name: "bin/link", Mode: fs.ModeSymlink | 0o777, Target: "tool"},
				{Name: "console", Mode: fs.ModeCharDevice | fs.ModeDevice | 0o600, Major: 5, Minor: 1},
				{Name: "tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
				{Name: "odd", Mode: fs.ModeSetuid | 0o755, Data: []byte("12345")},
			},
			want: []parsedEntry{
				{"bin", 0o40755, "", 0, 0, 2},
				{"bin/tool", 0o100755, "abc", 0, 0, 1},
				{"bin/link", 0o120777, "tool", 0, 0, 1},
				{"console", 0o20600, "", 5, 1, 1},
				{"tmp", 0o41777, "", 0, 0, 2},
				{"odd", 0o104755, "12345", 0, 0, 1},
			},
		},
		{name: "duplicate", entries: []Entry{{Name: "a", Mode: 0o644}, {Name: "./a", Mode: 0o644}}, wantErr: "duplicate"},
		{name: "escape", entries: []Entry{{Name: "../etc/passwd", Mode: 0o644}}, wantErr: "invalid name"},
		{name: "root", entries: []Entry{{Name: "/", Mode: fs.ModeDir | 0o755}}, wantErr: "invalid name"},
		{name: "fifo unsupported", entries: []Entry{{Name: "p", Mode: fs.ModeNamedPipe | 0o644}}, wantErr: "unsupported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := NewCPIOWriter(&buf)
			var err error
			for _, e := range tc.entries {
				if err = w.Add(e); err != nil {
					break
				}
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Add error = %v; want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			got := readNewc(t, buf.Bytes())
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteInitramfsAndBootEnv(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteInitramfs(&buf, []byte("\x7fELFagentd"), Entry{Name: "bin", Mode: fs.ModeDir | 0o755}); err != nil {
		t.Fatal(err)
	}
	got := map[string]parsedEntry{}
	for _, e := range readNewc(t, buf.Bytes()) {
		got[e.Name] = e
	}
	if e := got["init"]; e.Mode != 0o100755 || e.Data != "\x7fELFagentd" {
		t.Errorf("init = %+v; want 0100755 with agentd bytes", e)
	}
	if e := got["dev/console"]; e.RMaj != 5 || e.RMin != 1 {
		t.Errorf("dev/console = %+v; want char 5:1", e)
	}
	if _, ok := got["bin"]; !ok {
		t.Errorf("extra entry bin missing")
	}

	var env bytes.Buffer
	if err := WriteBootEnv(&env, []string{"MSB_HOSTNAME=box", "PATH=/bin:/usr/bin", "SECRET=a b=c"}); err != nil {
		t.Fatal(err)
	}
	entries := readNewc(t, env.Bytes())
	if len(entries) != 2 || entries[1].Name != BootEnvPath || entries[1].Mode != 0o100600 {
		t.Fatalf("boot env archive = %+v", entries)
	}
	if want := "MSB_HOSTNAME=box\x00PATH=/bin:/usr/bin\x00SECRET=a b=c\x00"; entries[1].Data != want {
		t.Errorf("boot.env = %q; want %q", entries[1].Data, want)
	}
	for _, bad := range [][]string{{"NOEQUALS"}, {"=v"}, {"K=a\x00b"}} {
		if err := WriteBootEnv(&bytes.Buffer{}, bad); err == nil {
			t.Errorf("WriteBootEnv(%q) = nil; want error", bad)
		}
	}

	// GNU cpio as an independent oracle, when installed (scripts/setup.sh does).
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Skipf("cpio not installed (apt-get install cpio); oracle check skipped")
	}
	dir := t.TempDir()
	both := append(buf.Bytes(), env.Bytes()...)
	cmd := exec.Command(cpio, "-i", "--no-absolute-filenames", "-d", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(both[:buf.Len()])
	if out, err := cmd.CombinedOutput(); err != nil && !strings.Contains(string(out), "console") {
		t.Fatalf("cpio -i: %v: %s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "init"))
	if err != nil || string(b) != "\x7fELFagentd" {
		t.Errorf("cpio extracted init = %q, %v", b, err)
	}
}

func FuzzWriteBootEnv(f *testing.F) {
	f.Add("K=V", "PATH=/bin")
	f.Add("=x", "")
	f.Fuzz(func(t *testing.T, a, b string) {
		var buf bytes.Buffer
		if err := WriteBootEnv(&buf, []string{a, b}); err != nil {
			return
		}
		entries := readNewc(t, buf.Bytes())
		if want := a + "\x00" + b + "\x00"; entries[1].Data != want {
			t.Fatalf("boot.env = %q; want %q", entries[1].Data, want)
		}
	})
}

func TestWriteScripts(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteScripts(&buf, map[string]string{"greet": "#!/bin/sh\necho hi\n", "a": "x"}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range readNewc(t, buf.Bytes()) {
		got = append(got, e.Name+" "+strconv.FormatUint(uint64(e.Mode), 8)+" "+e.Data)
	}
	want := []string{"msb 40755 ", "msb/scripts 40755 ", "msb/scripts/a 100755 x", "msb/scripts/greet 100755 #!/bin/sh\necho hi\n"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("scripts archive (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"", "..", "a/b", "x\x00"} {
		if err := WriteScripts(&bytes.Buffer{}, map[string]string{bad: "x"}); err == nil {
			t.Errorf("WriteScripts(%q) = nil; want error", bad)
		}
	}
}
