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

// TestWritev checks that writev delivers every byte of several buffers in
// order through a session's stdin pipe, waiting in the poller while the
// pipe is full (short writes go on with the rest), and that a pipe whose
// reader is gone is an error, not a hang.
func TestWritev(t *testing.T) {
	tests := []struct {
		name string
		bufs []int
	}{
		{"fits the pipe", []int{100, 4096, 7}},
		{"four chunks, more than the pipe", []int{256 << 10, 256 << 10, 256 << 10, 300 << 10}},
		{"empty buffers between", []int{0, 5, 0, 70 << 10}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, w, err := sessionPipe(true)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			defer w.Close()
			var want []byte
			iov := make([][]byte, len(tc.bufs))
			for i, n := range tc.bufs {
				iov[i] = make([]byte, n)
				for j := range iov[i] {
					iov[i][j] = byte(i*31 + j*7/5)
				}
				want = append(want, iov[i]...)
			}
			got := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(r)
				got <- b
			}()
			rc, err := w.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			if err := writev(rc, iov); err != nil {
				t.Fatalf("writev: %v", err)
			}
			w.Close()
			if b := <-got; !bytes.Equal(b, want) {
				t.Errorf("read %d bytes, not the %d written in order", len(b), len(want))
			}
		})
	}
	t.Run("reader gone", func(t *testing.T) {
		r, w, err := sessionPipe(true)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		r.Close()
		rc, err := w.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		if err := writev(rc, [][]byte{[]byte("x")}); !errors.Is(err, unix.EPIPE) {
			t.Errorf("writev to a pipe without reader = %v; want EPIPE", err)
		}
	})
	t.Run("closed while full", func(t *testing.T) {
		r, w, err := sessionPipe(true)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		rc, err := w.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- writev(rc, [][]byte{make([]byte, 4<<20)}) }()
		time.Sleep(50 * time.Millisecond)
		w.Close()
		select {
		case err := <-done:
			if err == nil {
				t.Error("writev into a full pipe closed under it returned nil")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("writev still blocked after Close")
		}
	})
}
