package rootfs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/erofs/go-erofs"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// rec is what the tests compare for one path of a tree.
type rec struct {
	Mode    string
	UID     uint32
	GID     uint32
	Content string // sha256 of a regular file's content
	Target  string
	Rdev    string
	LinkTo  string // first path (byte order) naming the same inode, if not this one
	Xattrs  map[string]string
}

// snapshotHost records every path under dir (not dir itself) from the host
// filesystem. Xattrs are read only when withXattrs is set.
func snapshotHost(tb testing.TB, dir string, withXattrs bool) map[string]rec {
	tb.Helper()
	out := map[string]rec{}
	firstByIno := map[uint64]string{}
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	sort.Strings(paths)
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			tb.Fatal(err)
		}
		r := rec{Mode: UnixToGoMode(uint32(st.Mode)).String(), UID: st.Uid, GID: st.Gid}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				tb.Fatal(err)
			}
			r.Content = hashOf(b)
			if first, ok := firstByIno[st.Ino]; ok {
				r.LinkTo = first
			} else {
				firstByIno[st.Ino] = rel
			}
		case unix.S_IFLNK:
			r.Target, _ = os.Readlink(p)
		case unix.S_IFCHR, unix.S_IFBLK:
			r.Rdev = fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
		}
		if withXattrs {
			x, err := readXattrs(p)
			if err != nil {
				tb.Fatal(err)
			}
			r.Xattrs = x
		}
		out[rel] = r
	}
	return out
}

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}

// fsckCheck runs fsck.erofs on img and fails the test on any finding.
func fsckCheck(tb testing.TB, img string) {
	tb.Helper()
	bin := requireTool(tb, "fsck.erofs", "erofs-utils")
	if out, err := exec.Command(bin, img).CombinedOutput(); err != nil {
		tb.Fatalf("fsck.erofs %s: %v\n%s", img, err, out)
	}
}

// fsckExtract checks img with fsck.erofs and extracts it; it returns the
// extracted tree's records, with xattrs and hardlink identity taken from
// the image itself (fsck.erofs 1.5 extracts neither).
func fsckExtract(tb testing.TB, img string) map[string]rec {
	tb.Helper()
	bin := requireTool(tb, "fsck.erofs", "erofs-utils")
	dir := filepath.Join(tb.TempDir(), "x")
	out, err := exec.Command(bin, "--extract="+dir, img).CombinedOutput()
	if err != nil {
		tb.Fatalf("fsck.erofs --extract %s: %v\n%s", img, err, out)
	}
	got := snapshotHost(tb, dir, false)
	f, err := os.Open(img)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	e, err := erofs.Open(f)
	if err != nil {
		tb.Fatal(err)
	}
	firstByIno := map[uint64]string{}
	names := map[uint64]int{} // regular-file inode → names in the tree
	nlink := map[uint64]int{} // regular-file inode → its stored link count
	for _, p := range sortedKeys(got) {
		fi, err := e.(fs.ReadLinkFS).Lstat(p)
		if err != nil {
			tb.Fatalf("erofs stat %s: %v", p, err)
		}
		st := fi.Sys().(*erofs.Stat)
		r := got[p]
		r.LinkTo = ""
		// fsck.erofs 1.5 chowns after chmod when extracting, which clears
		// setuid/setgid (dump.erofs masks them too), so those two bits come
		// from the image.
		special := st.Mode & (fs.ModeSetuid | fs.ModeSetgid)
		if special != 0 && r.Mode == (st.Mode&^special).String() {
			r.Mode = st.Mode.String()
		}
		if st.Mode.IsRegular() {
			names[uint64(st.Ino)]++
			nlink[uint64(st.Ino)] = st.Nlink
			if first, ok := firstByIno[uint64(st.Ino)]; ok {
				r.LinkTo = first
			} else {
				firstByIno[uint64(st.Ino)] = p
			}
		}
		if len(st.Xattrs) > 0 {
			r.Xattrs = map[string]string{}
			for k, v := range st.Xattrs {
				// go-erofs reads POSIX ACLs back under their prefix,
				// trailing dot included (see erofsXattrs).
				r.Xattrs[strings.TrimSuffix(k, ".")] = v
			}
		}
		got[p] = r
	}
	for ino, n := range names {
		if nlink[ino] != n {
			tb.Errorf("inode %d (%s) has nlink %d; want %d (its names in the image)", ino, firstByIno[ino], nlink[ino], n)
		}
	}
	return got
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func diffTrees(tb testing.TB, got, want map[string]rec) {
	tb.Helper()
	if d := cmp.Diff(want, got); d != "" {
		tb.Errorf("extracted tree mismatch (-want +got):\n%s", d)
	}
}
