// Package guest builds hangar's guest image and waits for guests to be
// ready.
//
// The default image is a directory with the kernel (vmlinuz, Debian's
// linux-image-cloud-amd64 as scripts/deps.sh unpacks it), an initramfs
// (initrd.img: a newc cpio, gzip-compressed, written by this package with
// sorted entries, zero owners and mtimes) and image.json, its manifest. The
// initramfs holds busybox-static, the statically linked guest agent
// (cmd/hangar-agent, in /sbin), /init (mounts proc, sys, devtmpfs and the
// RAM-backed /run and /tmp, then execs busybox init) and an inittab that
// keeps the agent running. No kernel module is needed: the 8250 serial
// ports, tmpfs and devtmpfs are built into that kernel.
//
// An image is identified by its digest, "sha256:" + SHA-256 over the text
// "hangar-image-v1\nkernel sha256:<k>\ninitrd sha256:<i>\ncmdline <c>\n".
// Building twice from the same inputs gives the same bytes and digest.
// Built images are cached in $HANGAR_CACHE/image/<digest hex>, and
// $HANGAR_CACHE/image/inputs/<input digest> names the image built from given
// inputs (kernel, busybox, agent binary, command line, builder version), so
// tests and daemons do not rebuild it.
//
// To build the default image by hand (from the hangar module, after
// scripts/deps.sh):
//
//	go run ./vmhost/guest/cmd/build-image [-out DIR]
//
// It prints the digest and the image directory.
//
// The agent's protocol, the agent itself and the host-side client are in
// the subpackage agent; WaitReady connects a client to a booting VM.
package guest
