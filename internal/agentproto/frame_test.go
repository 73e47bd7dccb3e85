package agentproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func mustNew(t testing.TB, id uint32, typ Type, payload any) Message {
	t.Helper()
	m, err := New(id, typ, payload)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustFrame(t testing.TB, m Message) RawFrame {
	t.Helper()
	f, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// codecMessages is the unit table shared by the codec tests, the golden test
// and the fuzz seeds.
func codecMessages(t testing.TB) []struct {
	name string
	m    Message
} {
	return []struct {
		name string
		m    Message
	}{
		{"empty payload", Message{ID: 1, Type: TypeExecStdin}},
		{"ready", mustNew(t, 0, TypeReady, Ready{BootTimeNs: 0, InitTimeNs: 1_000_000, ReadyTimeNs: 2_000_000, ProtocolVersion: 1, Capabilities: []string{CapExecPTY, CapFs}})},
		{"shutdown", mustNew(t, 0, TypeShutdown, nil)},
		{"exec request", mustNew(t, 1, TypeExecRequest, ExecRequest{Cmd: "echo", Args: []string{"hi"}, Env: []string{"PATH=/bin"}, Rows: 24, Cols: 80})},
		{"exec started", mustNew(t, 1, TypeExecStarted, ExecStarted{PID: 42})},
		{"exec stdout", mustNew(t, 1, TypeExecStdout, ExecData{Data: []byte("hi\n")})},
		{"exec stderr", mustNew(t, IDStep+1, TypeExecStderr, ExecData{Data: []byte("oops")})},
		{"exec exited", mustNew(t, 1, TypeExecExited, ExecExited{Code: 3})},
		{"exec failed", mustNew(t, 2, TypeExecFailed, ExecFailed{Kind: FailNotFound, Errno: ptr(int32(2)), ErrnoName: ptr("ENOENT"), Message: `spawn "x": No such file or directory`, Stage: ptr("execvp")})},
		{"exec resize", mustNew(t, 1, TypeExecResize, ExecResize{Rows: 50, Cols: 132})},
		{"exec signal", mustNew(t, 1, TypeExecSignal, ExecSignal{Signal: 9})},
		{"fs stat", mustNew(t, 3, TypeFsRequest, FsRequest{Op: FsOp{Kind: FsStat, Path: "/x"}})},
		{"fs write", mustNew(t, 4, TypeFsRequest, FsRequest{Op: FsOp{Kind: FsWrite, Path: "/w", Mode: ptr(uint32(0o600))}})},
		{"fs data", mustNew(t, 4, TypeFsData, FsData{Data: []byte{0, 1, 2}})},
		{"fs response", mustNew(t, 3, TypeFsResponse, FsResponse{OK: true, Data: &FsResultData{Stat: &FsEntry{Path: "/x", Kind: "file", Size: 3, Mode: 0o100644}}})},
		{"max id", mustNew(t, 0xFFFFFFFF, TypeExecStdout, ExecData{})},
	}
}

var msgCmp = cmpopts.EquateEmpty()

func TestCodecRoundTrip(t *testing.T) {
	for _, tc := range codecMessages(t) {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := NewEncoder(&buf).Encode(tc.m); err != nil {
				t.Fatal(err)
			}
			d := NewDecoder(&buf)
			got, err := d.Decode()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.m, got, msgCmp); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if _, err := d.Decode(); err != io.EOF {
				t.Errorf("second Decode error = %v; want io.EOF (buffer consumed)", err)
			}
		})
	}
}

func TestCodecManyMessages(t *testing.T) {
	msgs := codecMessages(t)
	var buf bytes.Buffer
	e := NewEncoder(&buf)
	for range 50 {
		for _, tc := range msgs {
			if err := e.Encode(tc.m); err != nil {
				t.Fatal(err)
			}
		}
	}
	// One byte at a time exercises every partial-read path.
	d := NewDecoder(iotestOneByte{&buf})
	for i := range 50 * len(msgs) {
		got, err := d.Decode()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if diff := cmp.Diff(msgs[i%len(msgs)].m, got, msgCmp); diff != "" {
			t.Fatalf("message %d (-want +got):\n%s", i, diff)
		}
	}
	if _, err := d.Decode(); err != io.EOF {
		t.Errorf("final Decode error = %v; want io.EOF", err)
	}
}

type iotestOneByte struct{ r io.Reader }

func (o iotestOneByte) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

func TestDecodeUnexpectedEOF(t *testing.T) {
	f := mustFrame(t, mustNew(t, 9, TypeExecStdout, ExecData{Data: []byte("truncate me")}))
	for cut := 0; cut < len(f); cut++ {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			want := io.ErrUnexpectedEOF
			if cut == 0 {
				want = io.EOF
			}
			if _, err := NewDecoder(bytes.NewReader(f[:cut])).Decode(); err != want {
				t.Errorf("Decode error = %v; want %v", err, want)
			}
			if _, err := ReadRawFrame(bytes.NewReader(f[:cut])); err != want {
				t.Errorf("ReadRawFrame error = %v; want %v", err, want)
			}
		})
	}
}

func header(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

func TestFrameLengthLimits(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"len 0", header(0), ErrFrameTooShort},
		{"len 4", append(header(4), 0, 0, 0, 0), ErrFrameTooShort},
		{"len max+1", header(MaxFrameLen + 1), ErrFrameTooLarge},
		{"len 0xffffffff", header(0xFFFFFFFF), ErrFrameTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewDecoder(bytes.NewReader(tc.in)).Decode(); !errors.Is(err, tc.want) {
				t.Errorf("Decode error = %v; want %v", err, tc.want)
			}
			if _, err := ReadRawFrame(bytes.NewReader(tc.in)); !errors.Is(err, tc.want) {
				t.Errorf("ReadRawFrame error = %v; want %v", err, tc.want)
			}
		})
	}
	t.Run("len 5 is a frame with an empty body", func(t *testing.T) {
		f, err := ReadRawFrame(bytes.NewReader(append(header(5), 0, 0, 0, 1, 0)))
		if err != nil {
			t.Fatalf("ReadRawFrame: %v", err)
		}
		if f.ID() != 1 {
			t.Errorf("ID() = %d; want 1", f.ID())
		}
		if _, err := f.Message(); err == nil {
			t.Errorf("Message() of an empty body succeeded; want a decode error")
		}
	})
	t.Run("len max is read", func(t *testing.T) {
		in := append(header(MaxFrameLen), make([]byte, MaxFrameLen)...)
		f, err := ReadRawFrame(bytes.NewReader(in))
		if err != nil || len(f) != 4+MaxFrameLen {
			t.Errorf("ReadRawFrame = %d bytes, %v; want %d, nil", len(f), err, 4+MaxFrameLen)
		}
	})
	t.Run("encode too large", func(t *testing.T) {
		m := mustNew(t, 1, TypeFsData, FsData{Data: make([]byte, MaxFrameLen)})
		if err := NewEncoder(io.Discard).Encode(m); !errors.Is(err, ErrFrameTooLarge) {
			t.Errorf("Encode error = %v; want ErrFrameTooLarge", err)
		}
	})
	t.Run("encode max data chunk", func(t *testing.T) {
		m := mustNew(t, 1, TypeFsData, FsData{Data: make([]byte, MaxDataChunk)})
		if err := NewEncoder(io.Discard).Encode(m); err != nil {
			t.Errorf("Encode of a %d-byte chunk: %v", MaxDataChunk, err)
		}
	})
}

func TestFrameHeaderWireFormat(t *testing.T) {
	m := mustNew(t, 0x01020304, TypeExecExited, ExecExited{Code: 0})
	f := mustFrame(t, m)
	if got, want := binary.BigEndian.Uint32(f[0:4]), uint32(len(f)-4); got != want {
		t.Errorf("bytes 0-3 (len) = %d; want %d", got, want)
	}
	if got, want := f[4:8], []byte{1, 2, 3, 4}; !bytes.Equal(got, want) {
		t.Errorf("bytes 4-7 (id) = %x; want %x", got, want)
	}
	if got := Flags(f[8]); got != FlagTerminal {
		t.Errorf("byte 8 (flags) = %#x; want %#x", got, FlagTerminal)
	}
	if f.ID() != 0x01020304 || f.Flags() != FlagTerminal {
		t.Errorf("RawFrame ID, Flags = %#x, %#x; want 0x01020304, %#x", f.ID(), f.Flags(), FlagTerminal)
	}
	got, err := f.Message()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m, got, msgCmp); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestFlagsRoundTrip(t *testing.T) {
	tests := []struct {
		t    Type
		want Flags
	}{
		{TypeExecExited, FlagTerminal},
		{TypeFsResponse, FlagTerminal},
		{TypeExecRequest, FlagSessionStart},
		{TypeFsRequest, FlagSessionStart},
		{TypeShutdown, FlagShutdown},
		{TypeExecStdout, 0},
	}
	for _, tc := range tests {
		t.Run(string(tc.t), func(t *testing.T) {
			var buf bytes.Buffer
			if err := NewEncoder(&buf).Encode(mustNew(t, 5, tc.t, nil)); err != nil {
				t.Fatal(err)
			}
			f, err := ReadRawFrame(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if f.Flags() != tc.want {
				t.Errorf("Flags() = %#x; want %#x", f.Flags(), tc.want)
			}
			m, err := f.Message()
			if err != nil {
				t.Fatal(err)
			}
			if m.Flags() != tc.want {
				t.Errorf("decoded Message.Flags() = %#x; want %#x", m.Flags(), tc.want)
			}
		})
	}
}

// TestGoldenFrames pins the exact bytes of frames. Run with -update to
// rewrite testdata/frames.golden after a deliberate wire change.
func TestGoldenFrames(t *testing.T) {
	var b strings.Builder
	for _, tc := range codecMessages(t) {
		fmt.Fprintf(&b, "%s: %s\n", tc.name, hex.EncodeToString(mustFrame(t, tc.m)))
	}
	path := filepath.Join("testdata", "frames.golden")
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), b.String()); diff != "" {
		t.Errorf("frames differ from %s (-want +got):\n%s", path, diff)
	}
}

// TestGoldenEnvelope checks one frame byte by byte against a hand-written
// serde/ciborium encoding, independent of the golden file.
func TestGoldenEnvelope(t *testing.T) {
	f := mustFrame(t, mustNew(t, 1, TypeExecStdout, ExecData{Data: []byte("hi")}))
	body := []byte{
		0xa3,            // map(3)
		0x61, 'v', 0x01, // "v": 1
		0x61, 't', 0x70, // "t": text(16)
		'c', 'o', 'r', 'e', '.', 'e', 'x', 'e', 'c', '.', 's', 't', 'd', 'o', 'u', 't',
		0x61, 'p', 0x49, // "p": bytes(9)
		0xa1, 0x64, 'd', 'a', 't', 'a', 0x42, 'h', 'i', // {"data": h'6869'}
	}
	want := append([]byte{0, 0, 0, byte(5 + len(body)), 0, 0, 0, 1, 0}, body...)
	if !bytes.Equal(f, want) {
		t.Errorf("frame = %x; want %x", []byte(f), want)
	}
}

// A length prefix of MaxFrameLen followed by a short stream must not
// allocate MaxFrameLen.
func TestHostileLengthDoesNotPreallocate(t *testing.T) {
	in := append(header(MaxFrameLen), make([]byte, 100)...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const rounds = 10
	for range rounds {
		if _, err := ReadRawFrame(bytes.NewReader(in)); err != io.ErrUnexpectedEOF {
			t.Fatalf("ReadRawFrame error = %v; want io.ErrUnexpectedEOF", err)
		}
		if _, err := NewDecoder(bytes.NewReader(in)).Decode(); err != io.ErrUnexpectedEOF {
			t.Fatalf("Decode error = %v; want io.ErrUnexpectedEOF", err)
		}
	}
	runtime.ReadMemStats(&after)
	perRound := (after.TotalAlloc - before.TotalAlloc) / rounds
	// A decoder allocates its 64 KiB read buffer and each frame starts at
	// 128 KiB; anything near MaxFrameLen means the prefix was trusted.
	if perRound > 512<<10 {
		t.Errorf("allocated %d bytes per round for a 104-byte stream; want < 512 KiB", perRound)
	}
}

func TestEncoderConcurrent(t *testing.T) {
	pr, pw := io.Pipe()
	e := NewEncoder(pw)
	const writers, each = 8, 100
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				data := bytes.Repeat([]byte{byte(w)}, 100+i*37)
				if err := e.Encode(mustNew(t, uint32(w), TypeExecStdout, ExecData{Data: data})); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	go func() { wg.Wait(); pw.Close() }()
	d := NewDecoder(bufio.NewReader(pr))
	counts := make(map[uint32]int)
	for {
		m, err := d.Decode()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var data ExecData
		if err := m.Decode(&data); err != nil {
			t.Fatal(err)
		}
		i := counts[m.ID]
		if want := bytes.Repeat([]byte{byte(m.ID)}, 100+i*37); !bytes.Equal(data.Data, want) {
			t.Fatalf("writer %d message %d corrupted", m.ID, i)
		}
		counts[m.ID]++
	}
	for w := range writers {
		if counts[uint32(w)] != each {
			t.Errorf("writer %d: got %d messages; want %d", w, counts[uint32(w)], each)
		}
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestEncoderWriteError(t *testing.T) {
	err := NewEncoder(failWriter{}).Encode(mustNew(t, 1, TypeExecStdin, ExecData{}))
	if !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("Encode error = %v; want wrapping io.ErrClosedPipe", err)
	}
}

func TestRawFrameMessageTooShort(t *testing.T) {
	if _, err := RawFrame([]byte{0, 0, 0, 5}).Message(); !errors.Is(err, ErrFrameTooShort) {
		t.Errorf("Message() error = %v; want ErrFrameTooShort", err)
	}
}

func fuzzSeeds(f *testing.F) {
	for _, tc := range codecMessages(f) {
		fr := mustFrame(f, tc.m)
		f.Add([]byte(fr))
		f.Add([]byte(fr[:len(fr)/2]))
		f.Add(append(append([]byte{}, fr...), fr...))
	}
	f.Add(header(0))
	f.Add(header(MaxFrameLen + 1))
	f.Add(append(header(5), 0, 0, 0, 1, 0))
	f.Add(append(header(MaxFrameLen), 1, 2, 3))
}

// payloadTargets returns fresh values of every payload type.
func payloadTargets() []any {
	return []any{
		&Ready{}, &ExecRequest{}, &ExecStarted{}, &ExecData{}, &ExecExited{}, &ExecFailed{},
		&ExecResize{}, &ExecSignal{}, &FsRequest{}, &FsResponse{}, &FsEntry{}, &Rlimit{},
	}
}

func FuzzDecoder(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDecoder(bytes.NewReader(data))
		for {
			m, err := d.Decode()
			if err != nil {
				return
			}
			for _, v := range payloadTargets() {
				// An empty payload leaves v at its zero value, which need
				// not be encodable (FsOp without a kind).
				if len(m.Payload) > 0 && m.Decode(v) == nil {
					// Whatever decodes must encode again.
					if _, err := Marshal(v); err != nil {
						t.Fatalf("re-encode %T %+v: %v", v, v, err)
					}
				}
			}
			fr, err := m.Marshal()
			if err != nil {
				if errors.Is(err, ErrFrameTooLarge) {
					continue
				}
				t.Fatalf("re-marshal %+v: %v", m, err)
			}
			back, err := fr.Message()
			if err != nil {
				t.Fatalf("decode re-marshalled frame: %v", err)
			}
			if diff := cmp.Diff(m, back, msgCmp); diff != "" {
				t.Fatalf("re-marshal round trip (-want +got):\n%s", diff)
			}
		}
	})
}

func FuzzRawFrame(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := ReadRawFrame(bytes.NewReader(data))
		if err != nil {
			return
		}
		n := binary.BigEndian.Uint32(fr[0:4])
		if len(fr) != 4+int(n) || n < MinFrameLen || n > MaxFrameLen {
			t.Fatalf("frame of %d bytes with length prefix %d", len(fr), n)
		}
		if !bytes.Equal(fr, data[:len(fr)]) {
			t.Fatalf("frame bytes differ from input")
		}
		bulk, err := ReadRawFrameBulk(bytes.NewReader(data))
		if err != nil || !bytes.Equal(bulk, fr) {
			t.Fatalf("ReadRawFrameBulk = %d bytes, %v; want ReadRawFrame's frame", len(bulk), err)
		}
		_ = fr.ID()
		_ = fr.Flags()
		if m, err := fr.Message(); err == nil && m.ID != fr.ID() {
			t.Fatalf("Message().ID = %d; want %d", m.ID, fr.ID())
		}
	})
}

func stdoutFrame(b *testing.B) (Message, []byte) {
	m := mustNew(b, 1, TypeExecStdout, ExecData{Data: bytes.Repeat([]byte("x"), 1024)})
	return m, mustFrame(b, m)
}

func BenchmarkEncodeStdout1KiB(b *testing.B) {
	data := bytes.Repeat([]byte("x"), 1024)
	e := NewEncoder(io.Discard)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		m, err := New(1, TypeExecStdout, ExecData{Data: data})
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Encode(m); err != nil {
			b.Fatal(err)
		}
	}
}

type repeatReader struct {
	frame []byte
	off   int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], r.frame[r.off:])
		n += k
		r.off = (r.off + k) % len(r.frame)
	}
	return n, nil
}

func BenchmarkDecodeStdout1KiB(b *testing.B) {
	_, f := stdoutFrame(b)
	d := NewDecoder(&repeatReader{frame: f})
	b.ReportAllocs()
	b.SetBytes(1024)
	for b.Loop() {
		m, err := d.Decode()
		if err != nil {
			b.Fatal(err)
		}
		var data ExecData
		if err := m.Decode(&data); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAppendHead(t *testing.T) {
	for _, n := range []uint64{0, 1, 23, 24, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, 1<<64 - 1} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			want, err := Marshal(n) // an unsigned integer is just a head
			if err != nil {
				t.Fatal(err)
			}
			got := appendHead(nil, cborUint, n)
			if !bytes.Equal(got, want) {
				t.Errorf("appendHead(uint, %d) = %x; want %x", n, got, want)
			}
			if headLen(n) != len(got) {
				t.Errorf("headLen(%d) = %d; want %d", n, headLen(n), len(got))
			}
		})
	}
}

// TestEnvelopeMatchesEncoder checks the hand-written envelope against the
// CBOR encoder at every payload length where the head changes size.
func TestEnvelopeMatchesEncoder(t *testing.T) {
	for _, n := range []int{0, 23, 24, 255, 256, 65535, 65536} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			m := Message{ID: 3, Type: TypeFsData, Payload: bytes.Repeat([]byte{0xa0}, n)}
			f, err := m.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			body, err := Marshal(envelope{V: Version, T: string(m.Type), P: m.Payload})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(f[headerLen:], body) {
				t.Errorf("envelope differs from the encoder's for a %d-byte payload", n)
			}
			if got := int(binary.BigEndian.Uint32(f[0:4])); got != MinFrameLen+len(body) {
				t.Errorf("length prefix = %d; want %d", got, MinFrameLen+len(body))
			}
		})
	}
}
