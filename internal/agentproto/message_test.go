package agentproto

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func ptr[T any](v T) *T { return &v }

var typeTable = []struct {
	t     Type
	wire  string
	flags Flags
}{
	{TypeReady, "core.ready", 0},
	{TypeShutdown, "core.shutdown", FlagShutdown},
	{TypeExecRequest, "core.exec.request", FlagSessionStart},
	{TypeExecStarted, "core.exec.started", 0},
	{TypeExecStdin, "core.exec.stdin", 0},
	{TypeExecStdout, "core.exec.stdout", 0},
	{TypeExecStderr, "core.exec.stderr", 0},
	{TypeExecExited, "core.exec.exited", FlagTerminal},
	{TypeExecFailed, "core.exec.failed", FlagTerminal},
	{TypeExecResize, "core.exec.resize", 0},
	{TypeExecSignal, "core.exec.signal", 0},
	{TypeFsRequest, "core.fs.request", FlagSessionStart},
	{TypeFsData, "core.fs.data", 0},
	{TypeFsResponse, "core.fs.response", FlagTerminal},
}

func TestTypeWireNames(t *testing.T) {
	if got, want := len(Types), 14; got != want {
		t.Fatalf("len(Types) = %d; want %d", got, want)
	}
	for i, tc := range typeTable {
		t.Run(tc.wire, func(t *testing.T) {
			if got := string(tc.t); got != tc.wire {
				t.Errorf("wire name = %q; want %q", got, tc.wire)
			}
			if Types[i] != tc.t {
				t.Errorf("Types[%d] = %q; want %q", i, Types[i], tc.t)
			}
			if !Type(tc.wire).Valid() {
				t.Errorf("Type(%q).Valid() = false; want true", tc.wire)
			}
			if got := tc.t.Flags(); got != tc.flags {
				t.Errorf("Flags() = %#x; want %#x", got, tc.flags)
			}
			// The type is CBOR text on the wire.
			b, err := Marshal(tc.t)
			if err != nil {
				t.Fatal(err)
			}
			var s string
			if err := cbor.Unmarshal(b, &s); err != nil || s != tc.wire {
				t.Errorf("CBOR of %q decodes to %q, %v; want the wire name", tc.t, s, err)
			}
			var back Type
			if err := Unmarshal(b, &back); err != nil || back != tc.t {
				t.Errorf("CBOR round trip = %q, %v; want %q", back, err, tc.t)
			}
		})
	}
}

func TestUnknownType(t *testing.T) {
	for _, name := range []string{"", "core.bogus", "CORE.READY", "core.ready ", "core.exec"} {
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			if Type(name).Valid() {
				t.Errorf("Valid() = true; want false")
			}
			if _, err := New(1, Type(name), nil); !errors.Is(err, ErrUnknownType) {
				t.Errorf("New error = %v; want ErrUnknownType", err)
			}
			if _, err := (Message{ID: 1, Type: Type(name)}).Marshal(); !errors.Is(err, ErrUnknownType) {
				t.Errorf("Marshal error = %v; want ErrUnknownType", err)
			}
			body, err := cbor.Marshal(map[string]any{"v": 1, "t": name, "p": []byte{0xa0}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rawFrame(1, 0, body).Message(); !errors.Is(err, ErrUnknownType) {
				t.Errorf("decode error = %v; want ErrUnknownType", err)
			}
		})
	}
}

// rawFrame builds a frame around an arbitrary body.
func rawFrame(id uint32, flags Flags, body []byte) RawFrame {
	f := make([]byte, headerLen, headerLen+len(body))
	n := MinFrameLen + len(body)
	f[0], f[1], f[2], f[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	f[4], f[5], f[6], f[7] = byte(id>>24), byte(id>>16), byte(id>>8), byte(id)
	f[8] = byte(flags)
	return append(f, body...)
}

func TestNewComputesFlags(t *testing.T) {
	for _, tc := range typeTable {
		t.Run(tc.wire, func(t *testing.T) {
			m, err := New(42, tc.t, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Flags(); got != tc.flags {
				t.Errorf("Message.Flags() = %#x; want %#x", got, tc.flags)
			}
			f, err := m.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Flags(); got != tc.flags {
				t.Errorf("frame flags = %#x; want %#x", got, tc.flags)
			}
			if got := f.ID(); got != 42 {
				t.Errorf("frame id = %d; want 42", got)
			}
		})
	}
}

func TestNewNilPayload(t *testing.T) {
	tests := []struct {
		t    Type
		want []byte
	}{
		{TypeShutdown, []byte{0xf6}},    // serde unit: null
		{TypeExecRequest, []byte{0xa0}}, // struct with defaults: {}
		{TypeReady, []byte{0xa0}},
	}
	for _, tc := range tests {
		t.Run(string(tc.t), func(t *testing.T) {
			m, err := New(0, tc.t, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(m.Payload, tc.want) {
				t.Errorf("payload = %x; want %x", m.Payload, tc.want)
			}
		})
	}
}

func TestMessageWithPayloadRoundTrip(t *testing.T) {
	req := ExecRequest{
		Cmd: "sh", Args: []string{"-c", "echo hi"}, Env: []string{"A=1"},
		Cwd: ptr("/tmp"), TTY: true, Rows: 40, Cols: 120,
		Rlimits: []Rlimit{{Resource: "nofile", Soft: 1024, Hard: 4096}},
	}
	m, err := New(7, TypeExecRequest, req)
	if err != nil {
		t.Fatal(err)
	}
	f, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.Message()
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != 7 || got.Type != TypeExecRequest {
		t.Errorf("got id %d type %q; want 7 %q", got.ID, got.Type, TypeExecRequest)
	}
	var back ExecRequest
	if err := got.Decode(&back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(req, back); diff != "" {
		t.Errorf("payload round trip (-want +got):\n%s", diff)
	}
}

func TestDecodeEmptyPayloadLeavesValue(t *testing.T) {
	v := ExecSignal{Signal: 9}
	if err := (Message{Type: TypeExecSignal}).Decode(&v); err != nil {
		t.Fatal(err)
	}
	if v.Signal != 9 {
		t.Errorf("Signal = %d; want 9 (unchanged)", v.Signal)
	}
}

// roundTrip encodes v as a payload and decodes it back into a fresh T.
func roundTrip[T any](t *testing.T, v T) T {
	t.Helper()
	b, err := Marshal(v)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	var back T
	if err := Unmarshal(b, &back); err != nil {
		t.Fatalf("Unmarshal(%x): %v", b, err)
	}
	return back
}

func TestPayloadRoundTrip(t *testing.T) {
	entry := FsEntry{Path: "/etc/hosts", Kind: "file", Size: 123, Mode: 0o100644, Modified: ptr(int64(1700000000))}
	tests := []struct {
		name string
		v    any
		rt   func(*testing.T, any) any
	}{
		{"Ready", Ready{BootTimeNs: 0, InitTimeNs: 1e9, ReadyTimeNs: 2e9, ProtocolVersion: 1, Capabilities: []string{CapExecPTY, CapFs}}, rt[Ready]},
		{"Ready/0.4.4", Ready{InitTimeNs: 5, ReadyTimeNs: 6}, rt[Ready]},
		{"ExecRequest/full", ExecRequest{Cmd: "ls", Args: []string{"-l"}, Env: []string{"K=V"}, Cwd: ptr("/"), User: ptr("1000:1000"), TTY: true, Rows: 1, Cols: 2, Rlimits: []Rlimit{{"nproc", 1, 2}}}, rt[ExecRequest]},
		{"ExecRequest/minimal", ExecRequest{Cmd: "true"}, rt[ExecRequest]},
		{"ExecStarted", ExecStarted{PID: 4294967295}, rt[ExecStarted]},
		{"ExecData", ExecData{Data: []byte("hello\x00\xff")}, rt[ExecData]},
		{"ExecData/empty", ExecData{}, rt[ExecData]},
		{"ExecExited", ExecExited{Code: -1}, rt[ExecExited]},
		{"ExecExited/137", ExecExited{Code: 137}, rt[ExecExited]},
		{"ExecFailed/full", ExecFailed{Kind: FailNotFound, Errno: ptr(int32(2)), ErrnoName: ptr("ENOENT"), Message: `spawn "nope": No such file or directory (os error 2)`, Stage: ptr("execvp")}, rt[ExecFailed]},
		{"ExecFailed/bare", ExecFailed{Kind: FailOther, Message: "bad user"}, rt[ExecFailed]},
		{"ExecResize", ExecResize{Rows: 65535, Cols: 1}, rt[ExecResize]},
		{"ExecSignal", ExecSignal{Signal: 15}, rt[ExecSignal]},
		{"FsRequest/Stat", FsRequest{Op: FsOp{Kind: FsStat, Path: "/x"}}, rt[FsRequest]},
		{"FsRequest/List", FsRequest{Op: FsOp{Kind: FsList, Path: "/"}}, rt[FsRequest]},
		{"FsRequest/Read", FsRequest{Op: FsOp{Kind: FsRead, Path: "/r"}}, rt[FsRequest]},
		{"FsRequest/Write", FsRequest{Op: FsOp{Kind: FsWrite, Path: "/w", Mode: ptr(uint32(0o644))}}, rt[FsRequest]},
		{"FsRequest/WriteNoMode", FsRequest{Op: FsOp{Kind: FsWrite, Path: "/w"}}, rt[FsRequest]},
		{"FsRequest/Mkdir", FsRequest{Op: FsOp{Kind: FsMkdir, Path: "/a/b"}}, rt[FsRequest]},
		{"FsRequest/Remove", FsRequest{Op: FsOp{Kind: FsRemove, Path: "/f"}}, rt[FsRequest]},
		{"FsRequest/RemoveDir", FsRequest{Op: FsOp{Kind: FsRemoveDir, Path: "/d"}}, rt[FsRequest]},
		{"FsRequest/Copy", FsRequest{Op: FsOp{Kind: FsCopy, Src: "/a", Dst: "/b"}}, rt[FsRequest]},
		{"FsRequest/Rename", FsRequest{Op: FsOp{Kind: FsRename, Src: "/a", Dst: "/b"}}, rt[FsRequest]},
		{"FsRequest/Symlink", FsRequest{Op: FsOp{Kind: FsSymlink, Src: "../t", Dst: "/l"}}, rt[FsRequest]},
		{"FsRequest/SetAttr", FsRequest{Op: FsOp{Kind: FsSetAttr, Path: "/f", Mode: ptr(uint32(0o750)), Modified: ptr(int64(1700000000))}}, rt[FsRequest]},
		{"FsRequest/SetAttrEmpty", FsRequest{Op: FsOp{Kind: FsSetAttr, Path: "/f"}}, rt[FsRequest]},
		{"FsEntry/symlink", FsEntry{Path: "/l", Kind: "symlink", Mode: 0o120777, Target: "../t"}, rt[FsEntry]},
		{"FsData", FsData{Data: bytes.Repeat([]byte{7}, 1000)}, rt[FsData]},
		{"FsResponse/ok", FsResponse{OK: true}, rt[FsResponse]},
		{"FsResponse/error", FsResponse{Error: ptr("stat: /x: no such file or directory")}, rt[FsResponse]},
		{"FsResponse/Stat", FsResponse{OK: true, Data: &FsResultData{Stat: &entry}}, rt[FsResponse]},
		{"FsResponse/List", FsResponse{OK: true, Data: &FsResultData{List: []FsEntry{entry, {Path: "/d", Kind: "dir", Mode: 0o40755}}}}, rt[FsResponse]},
		{"FsResponse/EmptyList", FsResponse{OK: true, Data: &FsResultData{List: []FsEntry{}}}, rt[FsResponse]},
		{"FsEntry", entry, rt[FsEntry]},
		{"Rlimit", Rlimit{Resource: "as", Soft: 1 << 40, Hard: 1<<64 - 1}, rt[Rlimit]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.rt(t, tc.v)
			if diff := cmp.Diff(tc.v, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func rt[T any](t *testing.T, v any) any { return roundTrip(t, v.(T)) }

// TestPayloadWire pins the serde-compatible shape of payloads in CBOR
// diagnostic notation.
func TestPayloadWire(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"FsOp/Stat", FsRequest{Op: FsOp{Kind: FsStat, Path: "/x"}}, `{"op": {"Stat": {"path": "/x"}}}`},
		{"FsOp/Copy", FsRequest{Op: FsOp{Kind: FsCopy, Src: "/a", Dst: "/b"}}, `{"op": {"Copy": {"src": "/a", "dst": "/b"}}}`},
		{"FsOp/Rename", FsOp{Kind: FsRename, Src: "/a", Dst: "/b"}, `{"Rename": {"src": "/a", "dst": "/b"}}`},
		{"FsOp/Write", FsOp{Kind: FsWrite, Path: "/x", Mode: ptr(uint32(420))}, `{"Write": {"path": "/x", "mode": 420}}`},
		{"FsOp/WriteNull", FsOp{Kind: FsWrite, Path: "/x"}, `{"Write": {"path": "/x", "mode": null}}`},
		{"FsOp/RemoveDir", FsOp{Kind: FsRemoveDir, Path: "/d"}, `{"RemoveDir": {"path": "/d"}}`},
		{"FsResponse/null", FsResponse{OK: false, Error: ptr("e")}, `{"ok": false, "error": "e", "data": null}`},
		{"FsResponse/Stat", FsResponse{OK: true, Data: &FsResultData{Stat: &FsEntry{Path: "/", Kind: "dir", Size: 1, Mode: 2}}},
			`{"ok": true, "error": null, "data": {"Stat": {"path": "/", "kind": "dir", "size": 1, "mode": 2, "modified": null}}}`},
		{"FsResponse/List", FsResponse{OK: true, Data: &FsResultData{}}, `{"ok": true, "error": null, "data": {"List": []}}`},
		{"ExecRequest/defaults", ExecRequest{Cmd: "ls"},
			`{"cmd": "ls", "args": [], "env": [], "cwd": null, "user": null, "tty": false, "rows": 0, "cols": 0, "rlimits": []}`},
		{"ExecFailed", ExecFailed{Kind: "not_found", Errno: ptr(int32(2)), ErrnoName: ptr("ENOENT"), Message: "m"},
			`{"kind": "not_found", "errno": 2, "errno_name": "ENOENT", "message": "m", "stage": null}`},
		{"ExecData", ExecData{Data: []byte("hi")}, `{"data": h'6869'}`},
		{"ExecExited", ExecExited{Code: -1}, `{"code": -1}`},
		{"Ready", Ready{BootTimeNs: 1, InitTimeNs: 2, ReadyTimeNs: 3, ProtocolVersion: 1, Capabilities: []string{"fs"}},
			`{"boot_time_ns": 1, "init_time_ns": 2, "ready_time_ns": 3, "protocol_version": 1, "capabilities": ["fs"]}`},
		{"Rlimit", Rlimit{"nofile", 1, 2}, `{"resource": "nofile", "soft": 1, "hard": 2}`},
		{"ExecResize", ExecResize{Rows: 24, Cols: 80}, `{"rows": 24, "cols": 80}`},
		{"ExecSignal", ExecSignal{Signal: 9}, `{"signal": 9}`},
		{"ExecStarted", ExecStarted{PID: 1}, `{"pid": 1}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Marshal(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			got, err := cbor.Diagnose(b)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("wire = %s; want %s", got, tc.want)
			}
		})
	}
}

func TestMarshalUnknownFsOp(t *testing.T) {
	for _, k := range []FsOpKind{"", "stat", "Chmod"} {
		if _, err := Marshal(FsRequest{Op: FsOp{Kind: k, Path: "/"}}); err == nil {
			t.Errorf("Marshal(FsOp{Kind: %q}) succeeded; want error", k)
		}
	}
}

// diag encodes CBOR diagnostic-like values for decode tests.
func mustCBOR(t testing.TB, v any) []byte {
	t.Helper()
	b, err := cbor.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeEnumErrors(t *testing.T) {
	tests := []struct {
		name string
		v    any
		into func([]byte) error
	}{
		{"op/empty map", map[string]any{"op": map[string]any{}}, decodeInto[FsRequest]},
		{"op/two variants", map[string]any{"op": map[string]any{"Stat": map[string]any{"path": "/"}, "List": map[string]any{"path": "/"}}}, decodeInto[FsRequest]},
		{"op/unknown variant", map[string]any{"op": map[string]any{"Chmod": map[string]any{"path": "/"}}}, decodeInto[FsRequest]},
		{"op/text", map[string]any{"op": "Stat"}, decodeInto[FsRequest]},
		{"op/args not map", map[string]any{"op": map[string]any{"Stat": 5}}, decodeInto[FsRequest]},
		{"op/array", map[string]any{"op": []any{"Stat"}}, decodeInto[FsRequest]},
		{"op/missing", map[string]any{}, decodeInto[FsRequest]},
		{"op/null", map[string]any{"op": nil}, decodeInto[FsRequest]},
		{"data/unknown", map[string]any{"ok": true, "data": map[string]any{"Read": []any{}}}, decodeInto[FsResponse]},
		{"data/list not array", map[string]any{"ok": true, "data": map[string]any{"List": 1}}, decodeInto[FsResponse]},
		{"data/stat not map", map[string]any{"ok": true, "data": map[string]any{"Stat": "x"}}, decodeInto[FsResponse]},
		{"exec/cmd int", map[string]any{"cmd": 1}, decodeInto[ExecRequest]},
		{"exec/rows overflow", map[string]any{"rows": 70000}, decodeInto[ExecRequest]},
		{"started/negative pid", map[string]any{"pid": -1}, decodeInto[ExecStarted]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.into(mustCBOR(t, tc.v)); err == nil {
				t.Errorf("decode succeeded; want error")
			}
		})
	}
}

func decodeInto[T any](b []byte) error {
	var v T
	return Unmarshal(b, &v)
}

func TestDecodeTolerance(t *testing.T) {
	t.Run("missing and unknown keys", func(t *testing.T) {
		var got ExecRequest
		if err := Unmarshal(mustCBOR(t, map[string]any{"cmd": "ls", "future": []int{1}}), &got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(ExecRequest{Cmd: "ls"}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		if r, c := got.TermSize(); r != DefaultRows || c != DefaultCols {
			t.Errorf("TermSize() = %d, %d; want %d, %d", r, c, DefaultRows, DefaultCols)
		}
	})
	t.Run("0.4.4 ready", func(t *testing.T) {
		var got Ready
		b := mustCBOR(t, map[string]any{"boot_time_ns": 0, "init_time_ns": 10, "ready_time_ns": 20})
		if err := Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(Ready{InitTimeNs: 10, ReadyTimeNs: 20}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("null optionals and arrays", func(t *testing.T) {
		var got ExecRequest
		b := mustCBOR(t, map[string]any{"cmd": "x", "cwd": nil, "args": nil})
		if err := Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if got.Cwd != nil || got.Args != nil {
			t.Errorf("got Cwd %v Args %v; want nil, nil", got.Cwd, got.Args)
		}
	})
	t.Run("invalid utf-8 path", func(t *testing.T) {
		raw := []byte{0xa1, 0x64, 'p', 'a', 't', 'h', 0x62, 0xff, 0xfe} // {"path": "\xff\xfe"}
		var got FsEntry
		if err := Unmarshal(raw, &got); err != nil {
			t.Fatal(err)
		}
		if got.Path != "\xff\xfe" {
			t.Errorf("Path = %q; want %q", got.Path, "\xff\xfe")
		}
	})
}

func TestDecodeLimits(t *testing.T) {
	t.Run("array elements", func(t *testing.T) {
		// An array header of 200 k one-byte empty maps: 200 KiB of input
		// must not become 200 k decoded FsEntry values.
		n := 200_000
		b := []byte{0xa1, 0x64, 'L', 'i', 's', 't', 0x9a, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
		b = append(b, bytes.Repeat([]byte{0xa0}, n)...)
		var d FsResultData
		if err := Unmarshal(b, &d); err == nil {
			t.Errorf("decoded %d entries; want a limit error", len(d.List))
		}
	})
	t.Run("nesting", func(t *testing.T) {
		b := append(bytes.Repeat([]byte{0x81}, 40), 0x00) // [[[…0…]]]
		var v any
		if err := Unmarshal(b, &v); err == nil {
			t.Errorf("decoded 40 nested arrays; want a limit error")
		}
	})
	t.Run("map pairs", func(t *testing.T) {
		n := 5000
		b := []byte{0xb9, byte(n >> 8), byte(n)}
		for i := range n {
			b = append(b, mustCBOR(t, fmt.Sprintf("k%d", i))...)
			b = append(b, 0)
		}
		var v ExecRequest
		if err := Unmarshal(b, &v); err == nil {
			t.Errorf("decoded a %d-pair map; want a limit error", n)
		}
	})
}

func TestNegotiate(t *testing.T) {
	tests := []struct {
		name    string
		v       uint32
		want    uint32
		wantErr bool
	}{
		{"0.4.4 agent", 0, 1, false},
		{"v1", 1, 1, false},
		{"newer", 2, 0, true},
		{"much newer", 1 << 31, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Negotiate(Ready{ProtocolVersion: tc.v})
			if tc.wantErr {
				if !errors.Is(err, ErrUnsupportedVersion) || !strings.Contains(err.Error(), "upgrade msb") {
					t.Errorf("Negotiate error = %v; want ErrUnsupportedVersion telling to upgrade msb", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("Negotiate = %d, %v; want %d, nil", got, err, tc.want)
			}
		})
	}
}

func TestParseRlimit(t *testing.T) {
	tests := []struct {
		in      string
		want    Rlimit
		wantErr bool
	}{
		{in: "nofile=1024", want: Rlimit{"nofile", 1024, 1024}},
		{in: "nofile=1024:4096", want: Rlimit{"nofile", 1024, 4096}},
		{in: "NPROC=10:10", want: Rlimit{"nproc", 10, 10}},
		{in: "as=0:18446744073709551615", want: Rlimit{"as", 0, 1<<64 - 1}},
		{in: "core=unlimited", want: Rlimit{"core", 1<<64 - 1, 1<<64 - 1}},
		{in: "nofile=1024:unlimited", want: Rlimit{"nofile", 1024, 1<<64 - 1}},
		{in: "stack=infinity:infinity", want: Rlimit{"stack", 1<<64 - 1, 1<<64 - 1}},
		{in: "nofile=unlimited:1024", wantErr: true},
		{in: "nofile=4096:1024", wantErr: true},
		{in: "nofile", wantErr: true},
		{in: "bogus=1", wantErr: true},
		{in: "nofile=", wantErr: true},
		{in: "nofile=-1", wantErr: true},
		{in: "nofile=1:x", wantErr: true},
		{in: "nofile=18446744073709551616", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseRlimit(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Errorf("ParseRlimit(%q) = %v; want error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("ParseRlimit(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			if back, err := ParseRlimit(got.String()); err != nil || back != got {
				t.Errorf("ParseRlimit(String()) = %v, %v; want %v", back, err, got)
			}
		})
	}
}

func TestReadyHas(t *testing.T) {
	r := Ready{Capabilities: []string{CapFs}}
	if !r.Has(CapFs) || r.Has(CapExecPTY) {
		t.Errorf("Has(fs), Has(exec.pty) = %v, %v; want true, false", r.Has(CapFs), r.Has(CapExecPTY))
	}
}

// FuzzPayload checks that every payload type decodes hostile CBOR without
// panicking and that whatever decodes survives an encode/decode round trip.
func FuzzPayload(f *testing.F) {
	seeds := []any{
		Ready{InitTimeNs: 1, ProtocolVersion: 1, Capabilities: []string{CapFs}},
		ExecRequest{Cmd: "ls", Args: []string{"-l"}, Cwd: ptr("/"), Rlimits: []Rlimit{{"nofile", 1, 2}}},
		ExecFailed{Kind: FailNotFound, Errno: ptr(int32(2)), Message: "m"},
		ExecData{Data: []byte("hi")},
		FsRequest{Op: FsOp{Kind: FsWrite, Path: "/w", Mode: ptr(uint32(0o644))}},
		FsRequest{Op: FsOp{Kind: FsCopy, Src: "/a", Dst: "/b"}},
		FsResponse{OK: true, Data: &FsResultData{Stat: &FsEntry{Path: "/", Kind: "dir"}}},
		FsResponse{OK: true, Data: &FsResultData{List: []FsEntry{{Path: "/a", Modified: ptr(int64(-1))}}}},
		FsResponse{Error: ptr("stat: x")},
	}
	for _, s := range seeds {
		b, err := Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xf6}) // null
	f.Add([]byte{0xf7}) // undefined
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, v := range payloadTargets() {
			if Unmarshal(data, v) != nil {
				continue
			}
			b, err := Marshal(v)
			if err != nil {
				t.Fatalf("re-encode %T %+v: %v", v, v, err)
			}
			back := reflect.New(reflect.TypeOf(v).Elem()).Interface()
			if err := Unmarshal(b, back); err != nil {
				t.Fatalf("decode re-encoded %T %x: %v", v, b, err)
			}
			if diff := cmp.Diff(v, back, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("%T round trip (-first +second):\n%s", v, diff)
			}
		}
	})
}
