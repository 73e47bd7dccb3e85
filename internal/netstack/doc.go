// Package netstack is the per-sandbox user-mode network stack: it terminates
// the guest's virtio-net frame stream in a gVisor tcpip stack running in the
// sandbox process and re-dials every guest flow from the host, so sandboxes
// need neither TAP devices nor root.
//
//	guest eth0 ──virtio-net──► VMM ──stream socket: [len u32 BE][Ethernet frame]...
//	                                   │
//	                    Stack.Serve: frameReader / frameWriter (bounded, counted)
//	                                   │  ICMP echo not for the gateway ──► host ping socket
//	                    channel link endpoint + Ethernet (ARP, NDP)
//	                                   │  groLink: checksums verified once, then
//	                                   │  in-order TCP segments merged (GRO, ≤ 64 KiB)
//	                    gVisor stack (IPv4, IPv6, TCP, UDP, ICMP); NIC promiscuous
//	                    and spoofing, owns only the gateway addresses
//	          ┌────────────────┬───────┴────────┬─────────────────────┐
//	   gateway:53 DNS     TCP forwarder     UDP forwarder        published ports
//	   (policy, rebind,   (Policy, cap,     (Policy, cap,        host listener ──►
//	    names table)       then dial)        idle sessions)      gonet dial to guest
//	          │                 │                 │
//	   upstream resolvers   Config.Dial: the destination, or host loopback for
//	                        the gateway's own address (host alias)
//
// Ownership: New starts the DNS servers and the published-port listeners; Serve
// moves frames for one stream at a time; Close ends everything and joins every
// goroutine the Stack started (including the per-flow ones gVisor's forwarders
// run through it). Guest input is hostile: malformed frames are counted and
// dropped, allocations are bounded by constants, never by a guest length.
//
// Throughput. Per-packet work in gVisor, not copying, bounds guest→host
// TCP, so the stack does as little of it per byte as it can: frames are
// read 64 KiB at a time and injected from the read buffer; before each read
// that may block, the segments that arrived in the batch are merged (gVisor's
// GRO behind groLink), so the IP and TCP layers see up to 64 KiB at once and
// acknowledge less often; checksums are verified once, at the link, which
// then claims receive checksum offload (a merged segment carries stale
// ones). A guest on the native VMM sends TSO frames (virtionet completes
// their checksum) that arrive here as single packets of up to 64 KiB.
// Memory per flow: gVisor's buffers (256 KiB, auto-tuned up to 1 MiB each
// way, see tuneTCP) and two 32 KiB splice buffers; per Stack: the 64 KiB
// read buffer, one maxFrameLen frame buffer, a writeBatch write buffer and
// GRO's fixed table. BenchmarkGuestToHostTCP and BenchmarkLoopbackTCP
// measure the path in process, the e2e BenchmarkNetGuestToHost (QEMU) and
// BenchmarkNestedNetGuestToHost (native VMM) through a guest.
package netstack
