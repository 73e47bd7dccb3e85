package volume

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/msb-go/msb/internal/home"
)

func testHome(t *testing.T) home.Home {
	t.Helper()
	h, err := home.At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"data", true}, {"a", true}, {"0", true}, {"my_vol.v2-x", true}, {strings.Repeat("a", 63), true},
		{"", false}, {strings.Repeat("a", 64), false}, {".hidden", false}, {"_x", false}, {"-x", false},
		{"..", false}, {"a/b", false}, {"a b", false}, {"a:b", false}, {"é", false},
	}
	for _, tc := range tests {
		if err := ValidName(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidName(%q) = %v; want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestCreateGetList(t *testing.T) {
	h := testHome(t)
	v, err := Create(h, "data", 1<<30, map[string]string{"team": "a"})
	if err != nil {
		t.Fatal(err)
	}
	if v.Name != "data" || v.QuotaBytes != 1<<30 || v.Labels["team"] != "a" || v.CreatedAt.IsZero() {
		t.Errorf("Create = %+v", v)
	}
	if st, err := os.Stat(DataDir(h, "data")); err != nil || !st.IsDir() {
		t.Fatalf("data dir: %v", err)
	}
	got, err := Get(h, "data")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, v) {
		t.Errorf("Get = %+v; want %+v", got, v)
	}
	b, err := os.ReadFile(filepath.Join(h.VolumeDir("data"), "volume.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"name": "data"`, `"created_at"`, `"quota_bytes": 1073741824`, `"labels"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("volume.json lacks %s:\n%s", key, b)
		}
	}

	if _, err := Create(h, "cache", 0, nil); err != nil {
		t.Fatal(err)
	}
	// A hand-made directory is a volume; stray files and bad names are not.
	if err := os.MkdirAll(h.VolumeDir("manual"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(h.VolumesDir(), ".tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.VolumesDir(), "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	list, err := List(h)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range list {
		names = append(names, v.Name)
	}
	if want := []string{"cache", "data", "manual"}; !reflect.DeepEqual(names, want) {
		t.Errorf("List names = %v; want %v", names, want)
	}
}

func TestListEmptyHome(t *testing.T) {
	list, err := List(testHome(t))
	if err != nil || len(list) != 0 {
		t.Errorf("List = %v, %v; want none", list, err)
	}
}

func TestCreateIdempotent(t *testing.T) {
	h := testHome(t)
	first, err := Create(h, "v", 64<<20, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(DataDir(h, "v"), "keep"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		quota  int64
		labels map[string]string
		err    error
	}{
		{"same", 64 << 20, map[string]string{"k": "v"}, nil},
		{"nothing asked", 0, nil, nil},
		{"other quota", 1 << 30, nil, ErrExists},
		{"other labels", 64 << 20, map[string]string{"k": "w"}, ErrExists},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Create(h, "v", tc.quota, tc.labels)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Create = %v; want %v", err, tc.err)
			}
			if err == nil && !reflect.DeepEqual(got, first) {
				t.Errorf("Create = %+v; want the existing %+v", got, first)
			}
		})
	}
	if _, err := Ensure(h, "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(DataDir(h, "v"), "keep")); err != nil {
		t.Errorf("re-create lost data: %v", err)
	}
}

func TestCreateInvalid(t *testing.T) {
	h := testHome(t)
	tests := []struct {
		name, vol string
		quota     int64
		labels    map[string]string
		want      string
	}{
		{"bad name", "../x", 0, nil, "invalid name"},
		{"negative quota", "v", -1, nil, "negative quota"},
		{"empty label key", "v", 0, map[string]string{"": "x"}, "invalid label key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Create(h, tc.vol, tc.quota, tc.labels)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Create = %v; want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := os.Stat(h.VolumesDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("invalid creates left %s: %v", h.VolumesDir(), err)
	}
}

func TestGetMissing(t *testing.T) {
	if _, err := Get(testHome(t), "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get = %v; want ErrNotFound", err)
	}
}

func TestRemove(t *testing.T) {
	h := testHome(t)
	if _, err := Create(h, "v", 0, nil); err != nil {
		t.Fatal(err)
	}
	// The guest may leave read-only directories behind.
	ro := filepath.Join(DataDir(h, "v"), "ro")
	if err := os.MkdirAll(ro, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ro, "f"), []byte("x"), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(ro, 0o500); err != nil {
		t.Fatal(err)
	}

	err := Remove(h, "v", []string{"a", "b"}, false)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "a, b") {
		t.Fatalf("Remove in use = %v; want ErrInUse naming a, b", err)
	}
	if _, err := Get(h, "v"); err != nil {
		t.Fatalf("refused Remove removed the volume: %v", err)
	}
	if err := Remove(h, "v", []string{"a"}, true); err != nil {
		t.Fatalf("Remove -f = %v", err)
	}
	if _, err := os.Stat(h.VolumeDir("v")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("volume dir left: %v", err)
	}
	if err := Remove(h, "v", nil, false); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove missing = %v; want ErrNotFound", err)
	}
}

func TestUsage(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a"), make([]byte, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "a"), filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	got, err := Usage(dir)
	if err != nil {
		t.Fatal(err)
	}
	// One 64 KiB file counted once, plus the directory itself.
	if got < 64<<10 || got >= 128<<10 {
		t.Errorf("Usage = %d; want 64 KiB plus a directory", got)
	}
}

func TestUsers(t *testing.T) {
	by := map[string][]string{"sb2": {"data", "cache"}, "sb1": {"data"}, "sb3": {"cache"}, "sb4": nil}
	if got, want := Users("data", by), []string{"sb1", "sb2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Users = %v; want %v", got, want)
	}
	if got := Users("none", by); got != nil {
		t.Errorf("Users(none) = %v; want nil", got)
	}
}
