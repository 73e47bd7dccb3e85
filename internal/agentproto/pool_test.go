package agentproto

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestReadRawFrameBulk(t *testing.T) {
	tests := []struct {
		name   string
		data   int // bytes of fs.data
		pooled bool
	}{
		{name: "small", data: 10},
		{name: "below the quarter threshold", data: quarterMin - DataHeadroom - 1},
		{name: "at the quarter threshold", data: quarterMin, pooled: true},
		{name: "a pipe's worth", data: BulkChunk / 4, pooled: true},
		{name: "above a quarter buffer", data: BulkChunk/4 + DataHeadroom},
		{name: "below the half threshold", data: halfMin - DataHeadroom - 1},
		{name: "at the half threshold", data: halfMin, pooled: true},
		{name: "half chunk", data: BulkChunk / 2, pooled: true},
		{name: "above a half buffer", data: BulkChunk/2 + DataHeadroom},
		{name: "exec chunk", data: MaxExecChunk, pooled: true},
		{name: "just below the pooling threshold", data: bulkMin - DataHeadroom - 1},
		{name: "at the pooling threshold", data: bulkMin, pooled: true},
		{name: "bulk chunk", data: BulkChunk, pooled: true},
		{name: "above a bulk buffer", data: BulkChunk + DataHeadroom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := DataFrame(9, TypeFsData, bytes.Repeat([]byte{7}, tt.data))
			if err != nil {
				t.Fatal(err)
			}
			stream := append(append([]byte{}, f...), f...)
			r := bytes.NewReader(stream)
			for range 2 {
				got, err := ReadRawFrameBulk(r)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, f) {
					t.Fatalf("frame differs from the one written")
				}
				if pooled := IsBulk(got); pooled != tt.pooled {
					t.Errorf("pooled = %v (cap %d); want %v", pooled, cap(got), tt.pooled)
				}
				PutBulk(got)
			}
			if _, err := ReadRawFrameBulk(r); err != io.EOF {
				t.Errorf("after the frames: %v; want io.EOF", err)
			}
		})
	}
}

func TestReadRawFrameBulkErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{name: "empty", in: nil, want: io.EOF},
		{name: "cut in the prefix", in: []byte{0, 0}, want: io.ErrUnexpectedEOF},
		{name: "too short", in: header(MinFrameLen - 1), want: ErrFrameTooShort},
		{name: "too large", in: header(MaxFrameLen + 1), want: ErrFrameTooLarge},
		{name: "lying half length", in: append(header(BulkChunk/2), 1, 2, 3), want: io.ErrUnexpectedEOF},
		{name: "lying bulk length", in: append(header(BulkChunk), 1, 2, 3), want: io.ErrUnexpectedEOF},
		{name: "lying large length", in: append(header(MaxFrameLen), 1, 2, 3), want: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ReadRawFrameBulk(bytes.NewReader(tt.in)); !errors.Is(err, tt.want) {
				t.Errorf("ReadRawFrameBulk = %v; want %v", err, tt.want)
			}
		})
	}
}

func TestPutBulkIgnoresOtherBuffers(t *testing.T) {
	b := make([]byte, 100)
	PutBulk(b) // not a bulk buffer: must not enter the pool
	for range 4 {
		if got := GetBulk(); len(got) != bulkBufSize || cap(got) != bulkBufSize {
			t.Fatalf("GetBulk: len %d cap %d; want %d", len(got), cap(got), bulkBufSize)
		}
	}
}
