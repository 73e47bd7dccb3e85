package hostmem

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestHugeAllowed(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		ok            bool
	}{
		{"never lets a mount choose", "always within_size advise [never] deny force\n", true},
		{"advise", "always within_size [advise] never deny force\n", true},
		{"deny refuses every mount", "always within_size advise never [deny] force\n", false},
		{"absent: no transparent huge pages", "", false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strconv.Itoa(i))
			if tc.content != "" {
				if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := hugeAllowed(p)
			if got := err == nil; got != tc.ok {
				t.Fatalf("hugeAllowed = %v; want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrUnavailable) {
				t.Errorf("error %v is not ErrUnavailable", err)
			}
		})
	}
}

func TestHugeRejectsSizes(t *testing.T) {
	for _, size := range []int64{0, -2 << 20, 1 << 20, 3<<20 + 4096} {
		if f, err := Huge(t.TempDir(), size); err == nil {
			f.Close()
			t.Errorf("Huge(%d) succeeded; want an error", size)
		}
	}
}

// hugeFile returns a Huge file or skips where the host cannot make one
// (not root, or no transparent huge pages): the caller then keeps a memfd.
func hugeFile(t *testing.T, dir string, size int64) *os.File {
	t.Helper()
	f, err := Huge(dir, size)
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("no huge-page memory here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestHugePages maps the file as QEMU does (shared, 2 MiB-aligned), touches
// it, and checks that the kernel mapped it with huge pages.
func TestHugePages(t *testing.T) {
	const size = 8 << 20
	f := hugeFile(t, t.TempDir(), size)
	if st, err := f.Stat(); err != nil || st.Size() != size {
		t.Fatalf("file size %v, %v; want %d", st.Size(), err, size)
	}
	checkHugeMapping(t, f, size)
}

// checkHugeMapping maps f as QEMU does (shared, 2 MiB-aligned), touches
// every page, and checks that the kernel mapped huge pages.
func checkHugeMapping(t *testing.T, f *os.File, size int) {
	t.Helper()
	// Reserve size+2 MiB, then map the file at the first 2 MiB boundary.
	res, err := unix.Mmap(-1, 0, size+2<<20, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(res)
	aligned := alignUp(res, 2<<20)
	addr, err := unix.MmapPtr(int(f.Fd()), 0, aligned, uintptr(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_FIXED)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	mem := unsafeSlice(addr, size)
	for i := 0; i < size; i += 4096 {
		mem[i] = byte(i)
	}
	got := smapsField(t, uintptr(addr), "ShmemPmdMapped:")
	if got < 2<<10 {
		t.Errorf("ShmemPmdMapped = %d kB after touching %d MiB; want at least one 2 MiB page", got, size>>20)
	}
}

// TestHugeLeavesNoMount checks that the tmpfs never shows in the host's
// mount table and that the mount point is gone.
func TestHugeLeavesNoMount(t *testing.T) {
	dir := t.TempDir()
	f := hugeFile(t, dir, 2<<20)
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "msb-ram") || strings.Contains(string(b), dir) {
		t.Errorf("the tmpfs shows in this process's mount table:\n%s", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("%s still holds %v", dir, ents)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Errorf("the file's file system: type %#x, %v; want tmpfs", st.Type, err)
	}
}

// smapsField returns the value in kB of field in /proc/self/smaps for the
// mapping that starts at addr.
func smapsField(t *testing.T, addr uintptr, field string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := strconv.FormatUint(uint64(addr), 16) + "-"
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") { // a mapping's header: "start-end perms ..."
			in = strings.HasPrefix(line, start)
			continue
		}
		if in && strings.HasPrefix(line, field) {
			n, _ := strconv.Atoi(fields[1])
			return n
		}
	}
	t.Fatalf("no %s for the mapping at %#x", field, addr)
	return 0
}
