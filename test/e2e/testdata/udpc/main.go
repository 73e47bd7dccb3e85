// Command udpc is a tiny UDP client and echo server for the network e2e
// tests (the guest's busybox has no UDP client):
//
//	udpc HOST:PORT MESSAGE   send MESSAGE, print the reply (3 s timeout)
//	udpc -l PORT             echo every datagram back to its sender
package main

import (
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "-l" {
		pc, err := net.ListenPacket("udp", ":"+os.Args[2])
		if err != nil {
			fail(err)
		}
		buf := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				fail(err)
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: udpc HOST:PORT MESSAGE | udpc -l PORT")
		os.Exit(2)
	}
	c, err := net.Dial("udp", os.Args[1])
	if err != nil {
		fail(err)
	}
	if _, err := c.Write([]byte(os.Args[2])); err != nil {
		fail(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 64<<10)
	n, err := c.Read(buf)
	if err != nil {
		fail(err)
	}
	fmt.Printf("%s\n", buf[:n])
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "udpc:", err)
	os.Exit(1)
}
