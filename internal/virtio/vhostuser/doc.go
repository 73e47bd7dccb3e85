// Package vhostuser is the back-end side of the vhost-user protocol (QEMU
// docs/interop/vhost-user.rst): a transport, like mmio, that serves one
// virtio.Device to one front-end (QEMU) over a connected unix socket. The
// front-end owns the virtio transport the guest sees and hands this
// back-end guest memory (memfd descriptors to map), ring layouts and kick
// and call eventfds; the device code is the same as under the native VMM.
//
//	QEMU (front-end)                     Serve (back-end)              virtio.Device
//	  SET_MEM_TABLE + fds       -->  mmap MAP_SHARED → guestmem.Memory
//	  SET_VRING_NUM/ADDR/BASE   -->  ring layout (user → guest addresses)
//	  SET_VRING_KICK/CALL + fds -->  kick goroutine; call eventfd   --> Activate(mem, features, queues, irq)
//	  guest kick (eventfd)      -->  Device.QueueNotify(q)
//	  call eventfd              <--  Interrupt.Used(q)
//	  GET_VRING_BASE            -->  Device.Reset, reply next avail index
//
// Everything the front-end sends is hostile input: payload sizes, descriptor
// counts, ring indices and sizes, memory regions and ring addresses are
// bounds-checked, unexpected descriptors are closed, and nothing it sends
// makes the back-end panic (FuzzMessages). GET_VRING_BASE is always answered
// promptly (a front-end stopping the device waits for it, and QEMU cannot be
// stopped with SIGTERM while it waits).
//
// The sandbox process serves a share by making a socketpair, passing one
// end to QEMU (machine.Share.Conn; internal/vmm/qemu turns it into
// -chardev socket,fd=N and -device vhost-user-fs-device) and calling Serve
// on the other with a virtiofs.Device. Ring sizes up to 1024 are accepted
// whatever the device's QueueMaxSizes, because QEMU's virtio-mmio transport
// tells the guest 1024.
//
// What is not implemented: dirty logging (VHOST_F_LOG_ALL, so no live
// migration), the back-end request channel (config change notifications,
// DAX mappings), inflight tracking, postcopy, packed rings, IOTLB, and
// memory hot-plug with ADD_MEM_REG/REM_MEM_REG (SET_MEM_TABLE replacing the
// whole table is supported).
package vhostuser
