package procfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// statLine builds a /proc/<pid>/stat line: utime 250, stime 50, ppid 1.
func statLine(pid int, comm string, state byte, start string) string {
	return fmt.Sprintf("%d (%s) %c 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 %s 1000 100 18446744073709551615",
		pid, comm, state, start)
}

var parseTests = []struct {
	name    string
	in      string
	want    Stat
	wantErr bool
}{
	{"plain", statLine(42, "msb", 'S', "12345"), Stat{42, "msb", 'S', 1, 250, 50, 12345}, false},
	{"paren in comm", statLine(42, "a) b", 'Z', "7"), Stat{42, "a) b", 'Z', 1, 250, 50, 7}, false},
	{"spaces and parens", statLine(7, "a) b (c)", 'R', "1"), Stat{7, "a) b (c)", 'R', 1, 250, 50, 1}, false},
	{"empty comm", statLine(7, "", 'S', "9"), Stat{7, "", 'S', 1, 250, 50, 9}, false},
	{"comm like fields", statLine(7, "x) R 1 2 3", 'S', "9"), Stat{7, "x) R 1 2 3", 'S', 1, 250, 50, 9}, false},
	{"no comm", "42 msb S 1 2", Stat{}, true},
	{"no pid", "(msb) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 5 1 1", Stat{}, true},
	{"bad pid", "x (msb) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 5 1 1", Stat{}, true},
	{"short", "42 (msb) S 1 2 3", Stat{}, true},
	{"long state", "42 (msb) SS 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 5 1 1", Stat{}, true},
	{"bad start", statLine(42, "msb", 'S', "x"), Stat{}, true},
	{"bad utime", "7 (a) R 1 7 7 0 -1 0 0 0 0 0 x 8 0 0 20 0 1 0 1 0 0", Stat{}, true},
	{"bad stime", "7 (a) R 1 7 7 0 -1 0 0 0 0 0 7 -8 0 0 20 0 1 0 1 0 0", Stat{}, true},
	{"close before open", "7 )a( R 1 7 7 0 -1 0 0 0 0 0 7 8 0 0 20 0 1 0 1 0 0", Stat{}, true},
	{"empty", "", Stat{}, true},
}

func TestParseStat(t *testing.T) {
	for _, tc := range parseTests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStat([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseStat(%q) error = %v; wantErr %v", tc.in, err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("ParseStat(%q) = %+v; want %+v", tc.in, got, tc.want)
			}
		})
	}
}

// FuzzParseStat must never panic, and whatever it accepts must be
// consistent: a one-byte state and a comm that came from inside the line.
func FuzzParseStat(f *testing.F) {
	for _, tc := range parseTests {
		f.Add([]byte(tc.in))
	}
	f.Add([]byte("1 ()) R"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ParseStat(b)
		if err != nil {
			return
		}
		if !strings.Contains(string(b), "("+st.Comm+")") {
			t.Errorf("ParseStat(%q).Comm = %q; not in the line", b, st.Comm)
		}
	})
}

// FuzzStatComm puts arbitrary command names (the kernel allows anything but
// NUL, spaces and parentheses included) into an otherwise valid line: the
// parse must give back the name and the fields after it.
func FuzzStatComm(f *testing.F) {
	for _, tc := range parseTests {
		if !tc.wantErr {
			f.Add(tc.want.Comm, tc.want.StartTime)
		}
	}
	f.Add(") ) (", int64(3))
	f.Add("a\nb) Z 9", int64(1<<40))
	f.Fuzz(func(t *testing.T, comm string, start int64) {
		if strings.IndexByte(comm, 0) >= 0 || start < 0 {
			return
		}
		line := statLine(99, comm, 'S', fmt.Sprint(start))
		st, err := ParseStat([]byte(line))
		if err != nil {
			t.Fatalf("ParseStat(%q): %v", line, err)
		}
		want := Stat{99, comm, 'S', 1, 250, 50, start}
		if st != want {
			t.Errorf("ParseStat(%q) = %+v; want %+v", line, st, want)
		}
	})
}

func TestSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
	st, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != os.Getpid() || st.PPID != os.Getppid() || st.StartTime <= 0 || st.Exited() {
		t.Errorf("ReadStat(self) = %+v; want pid %d, ppid %d, a start time, running", st, os.Getpid(), os.Getppid())
	}
	start, err := StartTime(os.Getpid())
	if err != nil || start != st.StartTime {
		t.Errorf("StartTime(self) = %d, %v; want %d", start, err, st.StartTime)
	}
	if !Alive(os.Getpid(), start) || !Alive(os.Getpid(), 0) {
		t.Errorf("Alive(self) = false; want true")
	}
	if Alive(os.Getpid(), start+1) {
		t.Errorf("Alive(self, start+1) = true; want false (another process's start time)")
	}
}

func TestAliveZombieAndGone(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	pid := cmd.Process.Pid
	start, err := StartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	// Until reaped, the exited child is a zombie: dead to Alive.
	deadline := time.Now().Add(10 * time.Second)
	for Alive(pid, start) {
		if time.Now().After(deadline) {
			t.Fatalf("Alive(exited child %d) = true", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if Alive(pid, start) {
		t.Errorf("Alive(reaped child) = true")
	}
	if Alive(0, 0) || Alive(-1, 0) {
		t.Errorf("Alive(non-positive pid) = true")
	}
}

// TestReaped: the errors a read of /proc/pid/stat gives for a process that
// is gone, and ones that only mean /proc cannot be read.
func TestReaped(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"no such file", &fs.PathError{Op: "open", Path: "/proc/1/stat", Err: unix.ENOENT}, true},
		{"reaped after open", &fs.PathError{Op: "read", Path: "/proc/1/stat", Err: unix.ESRCH}, true},
		{"hidepid", &fs.PathError{Op: "open", Path: "/proc/1/stat", Err: unix.EACCES}, false},
		{"unsupported", errors.ErrUnsupported, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := reaped(tt.err); got != tt.want {
				t.Errorf("reaped(%v) = %v; want %v", tt.err, got, tt.want)
			}
		})
	}
}
