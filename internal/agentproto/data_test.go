package agentproto

import (
	"bytes"
	"errors"
	"testing"
)

// dataSizes cross every CBOR head width of both the data and the payload.
var dataSizes = []int{0, 1, 17, 18, 23, 24, 248, 249, 255, 256, 65535 - 6, 65535, 65536, 1 << 20, MaxFrameLen - DataHeadroom}

// TestDataFrameMatchesMarshal pins the hand-built data frames to what the
// generic encoder produces for the same message, for every data type and
// every head width.
func TestDataFrameMatchesMarshal(t *testing.T) {
	types := []Type{TypeExecStdin, TypeExecStdout, TypeExecStderr, TypeFsData}
	for _, typ := range types {
		for _, n := range dataSizes {
			data := bytes.Repeat([]byte{0x5a}, n)
			m, err := New(7, typ, ExecData{Data: data})
			if err != nil {
				t.Fatal(err)
			}
			want, err := m.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			got, err := DataFrame(7, typ, data)
			if err != nil {
				t.Fatalf("DataFrame(%s, %d bytes): %v", typ, n, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("DataFrame(%s, %d bytes) differs from Marshal: got %x…, want %x…", typ, n, got[:min(len(got), 48)], want[:min(len(want), 48)])
			}
			buf := make([]byte, DataHeadroom+n+3)
			copy(buf[DataHeadroom:], data)
			put, err := PutDataFrame(buf, 7, typ, n)
			if err != nil {
				t.Fatalf("PutDataFrame(%s, %d bytes): %v", typ, n, err)
			}
			if !bytes.Equal(put, want) {
				t.Errorf("PutDataFrame(%s, %d bytes) differs from Marshal", typ, n)
			}
			back, err := put.Message()
			if err != nil {
				t.Fatalf("decode PutDataFrame(%s, %d): %v", typ, n, err)
			}
			d, err := back.Data()
			if err != nil || !bytes.Equal(d, data) {
				t.Errorf("Data() of a %d-byte %s = %d bytes, %v; want the data", n, typ, len(d), err)
			}
		}
	}
}

func TestDataFrameErrors(t *testing.T) {
	tests := []struct {
		name string
		t    Type
		n    int
		buf  int
		want error
	}{
		{name: "not a data type", t: TypeExecExited, n: 1, buf: DataHeadroom + 1},
		{name: "too large", t: TypeFsData, n: MaxFrameLen, buf: DataHeadroom + MaxFrameLen, want: ErrFrameTooLarge},
		{name: "negative", t: TypeFsData, n: -1, buf: DataHeadroom, want: ErrFrameTooLarge},
		{name: "buffer too short", t: TypeFsData, n: 10, buf: DataHeadroom + 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := PutDataFrame(make([]byte, tt.buf), 1, tt.t, tt.n)
			if err == nil {
				t.Fatal("PutDataFrame succeeded; want an error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error = %v; want %v", err, tt.want)
			}
		})
	}
}

// TestDataInPlace checks that a canonical payload's data is not copied.
func TestDataInPlace(t *testing.T) {
	f, err := DataFrame(3, TypeExecStdout, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.Message()
	if err != nil {
		t.Fatal(err)
	}
	d, err := m.Data()
	if err != nil {
		t.Fatal(err)
	}
	f[len(f)-1] = '!'
	if string(d) != "hell!" {
		t.Errorf("Data() = %q after changing the frame; want it to alias the frame (%q)", d, "hell!")
	}
}

// TestDataFastPathMatchesDecoder feeds encodings the fast paths must turn
// down (or agree on) next to the CBOR decoder's answer.
func TestDataFastPathMatchesDecoder(t *testing.T) {
	payloads := [][]byte{
		{0xa1, 0x64, 'd', 'a', 't', 'a', 0x43, 1, 2, 3},         // canonical
		{0xa1, 0x64, 'd', 'a', 't', 'a', 0x58, 3, 1, 2, 3},      // non-shortest head: decoder accepts
		{0xa1, 0x64, 'd', 'a', 't', 'a', 0x5f, 0x41, 1, 0xff},   // indefinite byte string
		{0xa1, 0x64, 'd', 'a', 't', 'a', 0x43, 1, 2},            // short
		{0xa1, 0x64, 'd', 'a', 't', 'a', 0x43, 1, 2, 3, 4},      // trailing byte
		{0xa2, 0x64, 'd', 'a', 't', 'a', 0x41, 1, 0x61, 'x', 0}, // extra key
		{0xa1, 0x64, 'd', 'a', 't', 'b', 0x41, 1},               // other key
		{0xa1, 0x64, 'd', 'a', 't', 'a', 0x61, 'x'},             // text, not bytes
		{0xa0}, // empty map
		{},
	}
	for _, p := range payloads {
		fast, fastOK := parseData(p)
		var d ExecData
		slowErr := Unmarshal(p, &d)
		if fastOK && (slowErr != nil || !bytes.Equal(fast, d.Data)) {
			t.Errorf("payload %x: fast path = %x, decoder = %x, %v", p, fast, d.Data, slowErr)
		}
		got, err := Message{Type: TypeFsData, Payload: p}.Data()
		if len(p) > 0 && (err == nil) != (slowErr == nil) {
			t.Errorf("payload %x: Data() error %v; decoder error %v", p, err, slowErr)
		}
		if err == nil && slowErr == nil && !bytes.Equal(got, d.Data) {
			t.Errorf("payload %x: Data() = %x; decoder %x", p, got, d.Data)
		}
	}
}

// FuzzFastPaths: whatever the hand-written parsers accept, the CBOR
// decoder accepts with the same result.
func FuzzFastPaths(f *testing.F) {
	for _, tc := range codecMessages(f) {
		f.Add([]byte(mustFrame(f, tc.m)[headerLen:]))
	}
	for _, n := range []int{0, 5, 24, 300} {
		fr, _ := DataFrame(1, TypeFsData, make([]byte, n))
		m, _ := fr.Message()
		f.Add([]byte(fr[headerLen:]))
		f.Add(m.Payload)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if typ, p, ok := parseEnvelope(body); ok {
			var env envelope
			if err := decMode.Unmarshal(body, &env); err != nil {
				t.Fatalf("fast envelope accepted %x; decoder: %v", body, err)
			}
			if env.T != typ || !bytes.Equal(env.P, p) {
				t.Fatalf("envelope %x: fast (%q, %x), decoder (%q, %x)", body, typ, p, env.T, env.P)
			}
		}
		if d, ok := parseData(body); ok {
			var v ExecData
			if err := Unmarshal(body, &v); err != nil {
				t.Fatalf("fast data accepted %x; decoder: %v", body, err)
			}
			if !bytes.Equal(d, v.Data) {
				t.Fatalf("data %x: fast %x, decoder %x", body, d, v.Data)
			}
		}
	})
}

func BenchmarkDataFrameRoundTrip(b *testing.B) {
	data := make([]byte, 1<<20)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		f, err := DataFrame(1, TypeFsData, data)
		if err != nil {
			b.Fatal(err)
		}
		m, err := f.Message()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.Data(); err != nil {
			b.Fatal(err)
		}
	}
}
