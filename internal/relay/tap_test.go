package relay

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/msb-go/msb/internal/launch"
)

// joinedTapLines is the tap's record lines, without their timestamps, for
// output arriving in the given chunks (stdout of one session, then its
// end), as the tap writes them and as joining each chunk to the carried
// bytes (what the tap did before WriteJoined) wrote them.
func joinedTapLines(t *testing.T, chunks [][]byte) (got, want []string) {
	t.Helper()
	lines := func(buf *bytes.Buffer) []string {
		var out []string
		for l := range strings.Lines(buf.String()) {
			// {"t":"2026-05-03T08:00:00.123Z", then the rest.
			out = append(out, l[len(`{"t":"2026-05-03T08:00:00.123Z"`):])
		}
		return out
	}
	var gotBuf, wantBuf bytes.Buffer
	r := &Relay{opts: RelayOptions{ExecLog: launch.NewExecLog(&gotBuf)}, log: slog.New(slog.DiscardHandler)}
	s := &relaySession{exec: true, logID: 9}
	for _, c := range chunks {
		r.logExec(s, 0, c, false)
	}
	r.logExec(s, 0, nil, true)

	model := launch.NewExecLog(&wantBuf)
	var carry []byte
	for i, c := range chunks {
		data := append(append([]byte(nil), carry...), c...)
		carry = nil
		var tail []byte
		data, tail = splitUTF8Tail(data)
		carry = append(carry, tail...)
		if err := model.Write(launch.SourceStdout, 9, data); err != nil {
			t.Fatal(i, err)
		}
	}
	if err := model.Write(launch.SourceStdout, 9, carry); err != nil {
		t.Fatal(err)
	}
	return lines(&gotBuf), lines(&wantBuf)
}

// chunked splits data at every size-th byte.
func chunked(data string, size int) [][]byte {
	var out [][]byte
	for len(data) > size {
		out = append(out, []byte(data[:size]))
		data = data[size:]
	}
	return append(out, []byte(data))
}

func TestTapCarry(t *testing.T) {
	text := "héllo wörld 日本語 🎉 done\n"
	bin := "\x00\xff\xc3\xe2\x82\xf0\x9f\x98\x80binary\xc3"
	for _, tc := range []struct {
		name   string
		chunks [][]byte
	}{
		{"text by 1", chunked(text, 1)},
		{"text by 2", chunked(text, 2)},
		{"text by 3", chunked(text, 3)},
		{"text by 5", chunked(text, 5)},
		{"binary by 1", chunked(bin, 1)},
		{"binary by 2", chunked(bin, 2)},
		{"binary by 4", chunked(bin, 4)},
		{"binary by 7", chunked(bin, 7)},
		{"empty chunks", [][]byte{[]byte("a\xe2"), nil, []byte("\x82"), nil, []byte("\xacb")}},
		{"incomplete at the end", [][]byte{[]byte("abc\xf0\x9f"), []byte("\x98")}},
		{"carry then invalid", [][]byte{[]byte("abc\xe2"), []byte("Aplenty of text after it")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, want := joinedTapLines(t, tc.chunks)
			if strings.Join(got, "") != strings.Join(want, "") {
				t.Errorf("tap lines:\n got %q\nwant %q", got, want)
			}
		})
	}
}

func FuzzTapCarry(f *testing.F) {
	f.Add([]byte("héllo wörld 日本語 🎉"), uint8(3))
	f.Add([]byte("\x00\xff\xc3\xe2\x82\xf0\x9f\x98\x80b"), uint8(1))
	f.Add([]byte("abc\xe2Aplenty"), uint8(4))
	f.Fuzz(func(t *testing.T, data []byte, size uint8) {
		got, want := joinedTapLines(t, chunked(string(data), int(size%16)+1))
		if strings.Join(got, "") != strings.Join(want, "") {
			t.Errorf("tap lines:\n got %q\nwant %q", got, want)
		}
	})
}

// TestTapCarryNoCopy: a chunk that follows a held-back partial character
// is logged without joining it to the carried bytes (which copied every
// such chunk into a fresh buffer).
func TestTapCarryNoCopy(t *testing.T) {
	if raceEnabled {
		// The race runtime allocates on its own; AllocsPerRun counts
		// every allocation of the process.
		t.Skip("allocation counts are not exact under the race detector")
	}
	r := &Relay{opts: RelayOptions{ExecLog: launch.NewExecLog(io.Discard)}, log: slog.New(slog.DiscardHandler)}
	s := &relaySession{exec: true, logID: 9}
	chunk := bytes.Repeat([]byte("\xffbinary\xc3"), 32<<10)
	r.logExec(s, 0, chunk, false) // warm the pools
	if got := testing.AllocsPerRun(20, func() { r.logExec(s, 0, chunk, false) }); got != 0 {
		t.Errorf("allocations per chunk after a carry = %v; want 0", got)
	}
}
