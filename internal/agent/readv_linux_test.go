package agent

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestReadv pins what readOutput relies on: one read drains as much of a
// session pipe as the buffers hold (several chunks of a 1 MiB pipe at
// once), in order, and a closed writer reads as io.EOF.
func TestReadv(t *testing.T) {
	const chunk = 256 << 10
	tests := []struct {
		name    string
		written int
		bufs    int
		want    int
	}{
		{"one buffer takes one chunk", 4 * chunk, 1, chunk},
		{"four buffers drain the pipe", 4 * chunk, 4, 4 * chunk},
		{"a partial chunk", chunk / 3, 4, chunk / 3},
		{"more buffers than data", chunk + 5, 4, chunk + 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, w, err := sessionPipe(false)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			defer w.Close()
			if got, err := unix.FcntlInt(r.Fd(), unix.F_GETPIPE_SZ, 0); err != nil || got < pipeSize {
				t.Skipf("pipe of %d bytes (%v): fs.pipe-max-size is below %d", got, err, pipeSize)
			}
			data := make([]byte, tc.written)
			for i := range data {
				data[i] = byte(i * 7 / 5)
			}
			if _, err := w.Write(data); err != nil {
				t.Fatal(err)
			}
			rc, err := r.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			iov := make([][]byte, tc.bufs)
			for i := range iov {
				iov[i] = make([]byte, chunk)
			}
			n, err := readv(rc, iov)
			if err != nil || n != tc.want {
				t.Fatalf("readv = %d, %v; want %d, nil", n, err, tc.want)
			}
			got := bytes.Join(iov, nil)[:n]
			if !bytes.Equal(got, data[:n]) {
				t.Errorf("the buffers do not hold the pipe's first %d bytes in order", n)
			}
		})
	}
}

func TestReadvEOFAndDeadline(t *testing.T) {
	r, w, err := sessionPipe(false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rc, err := r.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	buf := [][]byte{make([]byte, 16)}

	r.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if n, err := readv(rc, buf); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("readv of an empty pipe past its deadline = %d, %v; want 0, %v", n, err, os.ErrDeadlineExceeded)
	}
	r.SetReadDeadline(time.Time{})
	w.Write([]byte("tail"))
	w.Close()
	if n, err := readv(rc, buf); n != 4 || err != nil {
		t.Errorf("readv of the last bytes = %d, %v; want 4, nil", n, err)
	}
	if n, err := readv(rc, buf); n != 0 || err != io.EOF {
		t.Errorf("readv after the writer closed = %d, %v; want 0, io.EOF", n, err)
	}
}
