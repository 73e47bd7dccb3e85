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
//	                                   │
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
package netstack
