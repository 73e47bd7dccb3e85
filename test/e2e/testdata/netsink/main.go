// Command netsink is the TCP throughput driver of the nested network
// benchmark (BenchmarkNestedNetGuestToHost):
//
//	netsink serve -n N ADDR   accept N connections one after another; for
//	                          each, check every byte against the pattern and
//	                          print one result line
//	netsink send ADDR BYTES   send BYTES pattern bytes, half-close, and wait
//	                          for the server to close
//
// The server times each connection from accept to EOF on its own clock, so
// a sender in L1 (loopback) and one in an L2 guest (through the sandbox's
// network stack) are timed alike, and a byte lost or corrupted on the way
// fails the run instead of inflating the figure.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"
)

// patternMod makes the pattern's period prime to every power-of-two buffer
// size, so a dropped or repeated chunk shows up as a mismatch.
const patternMod = 251

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ExitOnError)
		n := fs.Int("n", 1, "connections to serve")
		fs.Parse(os.Args[2:])
		if fs.NArg() != 1 {
			usage()
		}
		err = serve(fs.Arg(0), *n)
	case "send":
		if len(os.Args) != 4 {
			usage()
		}
		var n int64
		n, err = strconv.ParseInt(os.Args[3], 10, 64)
		if err == nil {
			err = send(os.Args[2], n)
		}
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "netsink: %v\n", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: netsink serve [-n N] ADDR | netsink send ADDR BYTES")
	os.Exit(2)
}

func serve(addr string, n int) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	fmt.Printf("netsink: listening %s\n", ln.Addr())
	buf := make([]byte, 256<<10)
	for i := 1; i <= n; i++ {
		c, err := ln.Accept()
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		start := time.Now()
		got, bad, err := drain(c, buf)
		elapsed := time.Since(start)
		c.Close()
		if err != nil {
			fmt.Printf("netsink: error conn=%d err=%q\n", i, err)
			continue
		}
		fmt.Printf("netsink: result conn=%d bytes=%d ms=%.3f bad=%d\n", i, got, float64(elapsed)/float64(time.Millisecond), bad)
	}
	return nil
}

// drain reads c to EOF and returns how many bytes came and how many reads
// differed from the pattern. The check is a memory compare against a
// pre-built run, so it does not cap the loopback figure it is compared with.
func drain(c net.Conn, buf []byte) (total, bad int64, err error) {
	run := pattern(len(buf) + patternMod)
	for {
		n, err := c.Read(buf)
		off := total % patternMod
		if !bytes.Equal(buf[:n], run[off:off+int64(n)]) {
			bad++
		}
		total += int64(n)
		if errors.Is(err, io.EOF) {
			return total, bad, nil
		}
		if err != nil {
			return total, bad, err
		}
	}
}

func send(addr string, n int64) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	// 64 KiB chunks of the pattern; patternMod does not divide the chunk,
	// so each write starts at its own offset into a pre-built run.
	const chunk = 64 << 10
	run := pattern(chunk + patternMod)
	for sent := int64(0); sent < n; {
		m := min(int64(chunk), n-sent)
		off := sent % patternMod
		if _, err := c.Write(run[off : off+m]); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		sent += m
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return fmt.Errorf("close write: %w", err)
	}
	// The server closes once it has read everything.
	if _, err := io.Copy(io.Discard, c); err != nil {
		return fmt.Errorf("wait for close: %w", err)
	}
	return nil
}

// pattern returns n bytes of the repeating pattern, starting at offset 0.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % patternMod)
	}
	return b
}
