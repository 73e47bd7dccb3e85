package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/msb-go/msb/internal/agentproto"
)

func u32p(v uint32) *uint32 { return &v }
func i64p(v int64) *int64   { return &v }

func TestFsOps(t *testing.T) {
	dir := t.TempDir()
	c := startServe(t, ServeOptions{})
	p := func(s string) string { return filepath.Join(dir, s) }
	os.WriteFile(p("file"), []byte("hello"), 0o640)
	os.Mkdir(p("sub"), 0o755)
	os.WriteFile(p("sub/a"), []byte("a"), 0o644)
	os.Symlink("file", p("link"))

	type check func(t *testing.T, r agentproto.FsResponse)
	ok := func(t *testing.T, r agentproto.FsResponse) {
		t.Helper()
		if !r.OK || r.Error != nil {
			t.Errorf("got ok=%v error %q; want ok", r.OK, errText(r))
		}
	}
	fails := func(prefix, contains string) check {
		return func(t *testing.T, r agentproto.FsResponse) {
			t.Helper()
			if r.OK || !strings.HasPrefix(errText(r), prefix) || !strings.Contains(errText(r), contains) {
				t.Errorf("got ok=%v error %q; want error %q…%q", r.OK, errText(r), prefix, contains)
			}
		}
	}
	exists := func(name string, want bool) check {
		return func(t *testing.T, r agentproto.FsResponse) {
			t.Helper()
			ok(t, r)
			if _, err := os.Lstat(p(name)); (err == nil) != want {
				t.Errorf("%s exists = %v; want %v", name, err == nil, want)
			}
		}
	}
	tests := []struct {
		name  string
		op    agentproto.FsOp
		check check
	}{
		{"stat file", agentproto.FsOp{Kind: agentproto.FsStat, Path: p("file")}, func(t *testing.T, r agentproto.FsResponse) {
			ok(t, r)
			if r.Data == nil || r.Data.Stat == nil {
				t.Fatalf("no stat data")
			}
			want := agentproto.FsEntry{Path: p("file"), Kind: "file", Size: 5, Mode: 0o100640}
			if d := cmp.Diff(want, *r.Data.Stat, cmpopts.IgnoreFields(agentproto.FsEntry{}, "Modified")); d != "" {
				t.Errorf("stat (-want +got):\n%s", d)
			}
			if m := r.Data.Stat.Modified; m == nil || time.Since(time.Unix(*m, 0)) > time.Hour {
				t.Errorf("modified = %v; want about now", deref(m))
			}
		}},
		{"stat symlink is lstat", agentproto.FsOp{Kind: agentproto.FsStat, Path: p("link")}, func(t *testing.T, r agentproto.FsResponse) {
			ok(t, r)
			if r.Data == nil || r.Data.Stat == nil || r.Data.Stat.Kind != "symlink" || r.Data.Stat.Target != "file" {
				t.Errorf("got %+v; want kind symlink, target file", r.Data)
			}
		}},
		{"stat missing", agentproto.FsOp{Kind: agentproto.FsStat, Path: p("missing")}, fails("stat: ", "no such file or directory")},
		{"list", agentproto.FsOp{Kind: agentproto.FsList, Path: dir}, func(t *testing.T, r agentproto.FsResponse) {
			ok(t, r)
			if r.Data == nil {
				t.Fatal("no list data")
			}
			var got []string
			for _, e := range r.Data.List {
				got = append(got, filepath.Base(e.Path)+":"+e.Kind)
			}
			sort.Strings(got)
			want := []string{"file:file", "link:symlink", "sub:dir"}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("list (-want +got):\n%s", d)
			}
		}},
		{"list missing", agentproto.FsOp{Kind: agentproto.FsList, Path: p("missing")}, fails("list: ", "no such file")},
		{"list a file", agentproto.FsOp{Kind: agentproto.FsList, Path: p("file")}, fails("list: ", "not a directory")},
		{"mkdir -p", agentproto.FsOp{Kind: agentproto.FsMkdir, Path: p("x/y/z")}, exists("x/y/z", true)},
		{"mkdir existing", agentproto.FsOp{Kind: agentproto.FsMkdir, Path: p("sub")}, exists("sub", true)},
		{"mkdir over file", agentproto.FsOp{Kind: agentproto.FsMkdir, Path: p("file/x")}, fails("mkdir: ", "not a directory")},
		{"copy", agentproto.FsOp{Kind: agentproto.FsCopy, Src: p("file"), Dst: p("copy")}, func(t *testing.T, r agentproto.FsResponse) {
			ok(t, r)
			data, err := os.ReadFile(p("copy"))
			fi, _ := os.Stat(p("copy"))
			if err != nil || string(data) != "hello" || fi.Mode().Perm() != 0o640 {
				t.Errorf("copy = %q %v %v; want hello 0640", data, err, fi.Mode())
			}
		}},
		{"copy missing", agentproto.FsOp{Kind: agentproto.FsCopy, Src: p("missing"), Dst: p("copy2")}, fails("copy: ", "no such file")},
		{"copy a dir", agentproto.FsOp{Kind: agentproto.FsCopy, Src: p("sub"), Dst: p("copy3")}, fails("copy: ", "not a regular file")},
		{"rename", agentproto.FsOp{Kind: agentproto.FsRename, Src: p("copy"), Dst: p("renamed")}, exists("renamed", true)},
		{"rename missing", agentproto.FsOp{Kind: agentproto.FsRename, Src: p("missing"), Dst: p("r2")}, fails("rename: ", "no such file")},
		{"remove", agentproto.FsOp{Kind: agentproto.FsRemove, Path: p("renamed")}, exists("renamed", false)},
		{"remove missing", agentproto.FsOp{Kind: agentproto.FsRemove, Path: p("renamed")}, fails("remove: ", "no such file")},
		{"remove a dir", agentproto.FsOp{Kind: agentproto.FsRemove, Path: p("sub")}, fails("remove: ", "is a directory")},
		{"remove_dir recursive", agentproto.FsOp{Kind: agentproto.FsRemoveDir, Path: p("x")}, exists("x", false)},
		{"remove_dir missing", agentproto.FsOp{Kind: agentproto.FsRemoveDir, Path: p("x")}, fails("remove_dir: ", "no such file")},
		{"remove_dir a file", agentproto.FsOp{Kind: agentproto.FsRemoveDir, Path: p("file")}, fails("remove_dir: ", "not a directory")},
		{"symlink", agentproto.FsOp{Kind: agentproto.FsSymlink, Src: "../file", Dst: p("sub/ln")}, func(t *testing.T, r agentproto.FsResponse) {
			ok(t, r)
			if got, err := os.Readlink(p("sub/ln")); got != "../file" {
				t.Errorf("readlink = %q, %v; want ../file", got, err)
			}
		}},
		{"symlink exists", agentproto.FsOp{Kind: agentproto.FsSymlink, Src: "x", Dst: p("sub/ln")}, fails("symlink: ", "file exists")},
		{"set_attr", agentproto.FsOp{Kind: agentproto.FsSetAttr, Path: p("sub"), Mode: u32p(0o750), Modified: i64p(1e9)}, func(t *testing.T, r agentproto.FsResponse) {
			ok(t, r)
			fi, err := os.Stat(p("sub"))
			if err != nil || fi.Mode().Perm() != 0o750 || fi.ModTime().Unix() != 1e9 {
				t.Errorf("sub = %v %v, %v; want 0750 at 1e9", fi.Mode(), fi.ModTime(), err)
			}
		}},
		{"set_attr symlink keeps target", agentproto.FsOp{Kind: agentproto.FsSetAttr, Path: p("link"), Mode: u32p(0o600), Modified: i64p(2e9)}, func(t *testing.T, r agentproto.FsResponse) {
			ok(t, r)
			li, _ := os.Lstat(p("link"))
			fi, _ := os.Stat(p("file"))
			if li.ModTime().Unix() != 2e9 || fi.Mode().Perm() != 0o640 || fi.ModTime().Unix() == 2e9 {
				t.Errorf("link mtime %v, target %v %v; want link at 2e9, target untouched", li.ModTime(), fi.Mode(), fi.ModTime())
			}
		}},
		{"set_attr missing", agentproto.FsOp{Kind: agentproto.FsSetAttr, Path: p("missing")}, fails("set_attr: ", "no such file")},
		{"read a dir", agentproto.FsOp{Kind: agentproto.FsRead, Path: dir}, fails("read: ", "is a directory")},
		{"read missing", agentproto.FsOp{Kind: agentproto.FsRead, Path: p("missing")}, fails("read: ", "no such file")},
		{"write under a file", agentproto.FsOp{Kind: agentproto.FsWrite, Path: p("file/x")}, fails("write: ", "not a directory")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, c.fs(tc.op))
		})
	}
}

func TestFsReadWrite(t *testing.T) {
	dir := t.TempDir()
	c := startServe(t, ServeOptions{})
	// 7 MiB + 5: three chunks, the last one short.
	content := make([]byte, 7<<20+5)
	newStream(3).Read(content)

	t.Run("write", func(t *testing.T) {
		name := filepath.Join(dir, "new/dir/f")
		id, ch := c.start(agentproto.TypeFsRequest, agentproto.FsRequest{Op: agentproto.FsOp{Kind: agentproto.FsWrite, Path: name, Mode: u32p(0o600)}})
		for off := 0; off < len(content); off += agentproto.MaxDataChunk {
			c.send(id, agentproto.TypeFsData, agentproto.FsData{Data: content[off:min(off+agentproto.MaxDataChunk, len(content))]})
		}
		c.send(id, agentproto.TypeFsData, agentproto.FsData{})
		r, _ := readFsResponse(t, ch)
		if !r.OK {
			t.Fatalf("write: %s", errText(r))
		}
		got, err := os.ReadFile(name)
		if err != nil || !bytes.Equal(got, content) {
			t.Errorf("file has %d bytes (err %v); want the %d written", len(got), err, len(content))
		}
		if fi, _ := os.Stat(name); fi.Mode().Perm() != 0o600 {
			t.Errorf("mode = %v; want 0600", fi.Mode())
		}
	})
	t.Run("write truncates", func(t *testing.T) {
		name := filepath.Join(dir, "trunc")
		os.WriteFile(name, []byte("long old content"), 0o644)
		id, ch := c.start(agentproto.TypeFsRequest, agentproto.FsRequest{Op: agentproto.FsOp{Kind: agentproto.FsWrite, Path: name}})
		c.send(id, agentproto.TypeFsData, agentproto.FsData{Data: []byte("new")})
		c.send(id, agentproto.TypeFsData, agentproto.FsData{})
		if r, _ := readFsResponse(t, ch); !r.OK {
			t.Fatalf("write: %s", errText(r))
		}
		if got, _ := os.ReadFile(name); string(got) != "new" {
			t.Errorf("file = %q; want %q", got, "new")
		}
	})
	t.Run("read", func(t *testing.T) {
		name := filepath.Join(dir, "new/dir/f")
		_, ch := c.start(agentproto.TypeFsRequest, agentproto.FsRequest{Op: agentproto.FsOp{Kind: agentproto.FsRead, Path: name}})
		r, data := readFsResponse(t, ch)
		if !r.OK || !bytes.Equal(data, content) {
			t.Errorf("read: ok=%v %q, %d bytes; want %d", r.OK, errText(r), len(data), len(content))
		}
	})
	t.Run("read empty file", func(t *testing.T) {
		name := filepath.Join(dir, "empty")
		os.WriteFile(name, nil, 0o644)
		_, ch := c.start(agentproto.TypeFsRequest, agentproto.FsRequest{Op: agentproto.FsOp{Kind: agentproto.FsRead, Path: name}})
		if r, data := readFsResponse(t, ch); !r.OK || len(data) != 0 {
			t.Errorf("read: ok=%v %q, %d bytes; want ok, 0", r.OK, errText(r), len(data))
		}
	})
	// The relay signals the sessions of a client that left; for a write
	// that is an abort: nothing the next user of the id sends may land in
	// the file, and the partial file is removed.
	t.Run("signal aborts write", func(t *testing.T) {
		name := filepath.Join(dir, "aborted")
		id, ch := c.start(agentproto.TypeFsRequest, agentproto.FsRequest{Op: agentproto.FsOp{Kind: agentproto.FsWrite, Path: name}})
		c.send(id, agentproto.TypeFsData, agentproto.FsData{Data: []byte("partial")})
		c.send(id, agentproto.TypeExecSignal, agentproto.ExecSignal{Signal: 9})
		r, _ := readFsResponse(t, ch)
		if r.OK || !strings.Contains(errText(r), "aborted") {
			t.Errorf("abort: ok=%v %q; want an aborted error", r.OK, errText(r))
		}
		if _, err := os.Lstat(name); !os.IsNotExist(err) {
			t.Errorf("partial file: Lstat err = %v; want it removed", err)
		}
		r, _ = readFsResponse(t, c.startID(id, agentproto.TypeFsData, agentproto.FsData{Data: []byte("late")}))
		if want := "unknown write session: " + strconv.FormatUint(uint64(id), 10); errText(r) != want {
			t.Errorf("data after abort: %q; want %q", errText(r), want)
		}
		if _, err := os.Lstat(name); !os.IsNotExist(err) {
			t.Errorf("data after abort recreated the file (Lstat err %v)", err)
		}
	})
	t.Run("abort leaves a replaced file alone", func(t *testing.T) {
		name := filepath.Join(dir, "replaced")
		id, ch := c.start(agentproto.TypeFsRequest, agentproto.FsRequest{Op: agentproto.FsOp{Kind: agentproto.FsWrite, Path: name}})
		c.send(id, agentproto.TypeFsData, agentproto.FsData{Data: []byte("partial")})
		// A round trip on another session makes sure the write is open.
		_, sch := c.start(agentproto.TypeFsRequest, agentproto.FsRequest{Op: agentproto.FsOp{Kind: agentproto.FsStat, Path: name}})
		readFsResponse(t, sch)
		if err := os.Rename(name, name+".old"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte("someone else's"), 0o644); err != nil {
			t.Fatal(err)
		}
		c.send(id, agentproto.TypeExecSignal, agentproto.ExecSignal{Signal: 9})
		if r, _ := readFsResponse(t, ch); r.OK {
			t.Errorf("abort: ok; want an aborted error")
		}
		if got, err := os.ReadFile(name); err != nil || string(got) != "someone else's" {
			t.Errorf("replacing file = %q, %v; want it untouched", got, err)
		}
	})
	t.Run("data for unknown write session", func(t *testing.T) {
		id, ch := c.start(agentproto.TypeFsData, agentproto.FsData{Data: []byte("x")})
		r, _ := readFsResponse(t, ch)
		want := "unknown write session: " + strconv.FormatUint(uint64(id), 10)
		if r.OK || errText(r) != want {
			t.Errorf("got ok=%v %q; want error %q", r.OK, errText(r), want)
		}
	})
}
