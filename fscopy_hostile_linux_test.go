package msb

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/msb-go/msb/internal/agentclient"
	"github.com/msb-go/msb/internal/agentproto"
)

// lyingTreeAgent plays a guest agent whose directory listings lie: /root
// is a directory whose List returns the entries of list(path) for any
// path; every file holds "owned". It answers only fs requests.
func lyingTreeAgent(t *testing.T, list func(path string) []agentproto.FsEntry) *FS {
	t.Helper()
	host, guest := net.Pipe()
	enc := agentproto.NewEncoder(guest)
	send := func(id uint32, typ agentproto.Type, payload any) {
		m, err := agentproto.New(id, typ, payload)
		if err == nil {
			_ = enc.Encode(m)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		send(0, agentproto.TypeReady, agentproto.Ready{ProtocolVersion: 1, Capabilities: []string{agentproto.CapFs, agentproto.CapFsMeta}})
		dec := agentproto.NewDecoder(guest)
		for {
			m, err := dec.Decode()
			if err != nil {
				return
			}
			var req agentproto.FsRequest
			if m.Type != agentproto.TypeFsRequest || m.Decode(&req) != nil {
				continue
			}
			switch req.Op.Kind {
			case agentproto.FsStat:
				e := agentproto.FsEntry{Path: req.Op.Path, Kind: "dir", Mode: 0o40755}
				send(m.ID, agentproto.TypeFsResponse, agentproto.FsResponse{OK: true, Data: &agentproto.FsResultData{Stat: &e}})
			case agentproto.FsList:
				l := list(req.Op.Path)
				send(m.ID, agentproto.TypeFsResponse, agentproto.FsResponse{OK: true, Data: &agentproto.FsResultData{List: l}})
			case agentproto.FsRead:
				send(m.ID, agentproto.TypeFsData, agentproto.FsData{Data: []byte("owned")})
				send(m.ID, agentproto.TypeFsResponse, agentproto.FsResponse{OK: true})
			}
		}
	}()
	c, err := agentclient.NewDirect(context.Background(), host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		guest.Close()
		<-done
	})
	return (&Sandbox{name: "test", client: c}).FS()
}

// TestFSCopyToHostLyingListing: a guest that lists names that are not
// plain names ("..", ".", "/", "a/b"), or a directory tree without end,
// cannot make CopyToHost write outside the destination or recurse without
// bound.
func TestFSCopyToHostLyingListing(t *testing.T) {
	dir := func(p string) agentproto.FsEntry { return agentproto.FsEntry{Path: p, Kind: "dir", Mode: 0o40755} }
	file := func(p string) agentproto.FsEntry {
		return agentproto.FsEntry{Path: p, Kind: "file", Mode: 0o100644, Size: 5}
	}
	// A host file the guest would like to overwrite.
	outside := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(outside, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		list func(path string) []agentproto.FsEntry
		want string
	}{
		{"dot-dot climbs out", func(p string) []agentproto.FsEntry {
			if p == "/root" {
				return []agentproto.FsEntry{dir("/root/..")}
			}
			return []agentproto.FsEntry{file(p + "/pwned")}
		}, "not a plain name"},
		{"file named dot-dot", func(p string) []agentproto.FsEntry {
			return []agentproto.FsEntry{file("/root/..")}
		}, "not a plain name"},
		{"dot loops", func(p string) []agentproto.FsEntry {
			return []agentproto.FsEntry{dir(p + "/.")}
		}, "not a plain name"},
		{"slash", func(p string) []agentproto.FsEntry {
			return []agentproto.FsEntry{file("/")}
		}, "not a plain name"},
		{"empty path", func(p string) []agentproto.FsEntry {
			return []agentproto.FsEntry{file("")}
		}, "not a plain name"},
		{"a name twice: file, then symlink out", func(p string) []agentproto.FsEntry {
			return []agentproto.FsEntry{file("/root/x"), {Path: "/root/x", Kind: "symlink", Target: outside, Mode: 0o120777}}
		}, "twice"},
		{"endless tree", func(p string) []agentproto.FsEntry {
			return []agentproto.FsEntry{dir(p + "/d")}
		}, "deeper than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			dst := filepath.Join(base, "in", "dst")
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			f := lyingTreeAgent(t, tc.list)
			err := f.CopyToHost(t.Context(), "/root", dst)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("CopyToHost = %v; want an error containing %q", err, tc.want)
			}
			// Nothing outside dst.
			_ = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
				if err != nil || p == base || p == filepath.Dir(dst) {
					return err
				}
				if rel, _ := filepath.Rel(dst, p); rel == ".." || strings.HasPrefix(rel, "../") {
					t.Errorf("CopyToHost wrote %s, outside %s", p, dst)
				}
				return nil
			})
			if got, _ := os.ReadFile(outside); string(got) != "mine" {
				t.Errorf("the host file outside the copy now holds %q", got)
			}
			if errors.Is(err, context.Canceled) {
				t.Errorf("CopyToHost = %v", err)
			}
		})
	}
}
