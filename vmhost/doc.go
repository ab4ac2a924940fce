// Package vmhost runs VMs on one host and moves their state to and from
// central storage (DESIGN §5, §6).
//
// This package holds the hypervisor interface and its contracts; drivers
// are subpackages (vmhost/qemu today; Cloud Hypervisor and Firecracker fit
// the same shape, since their snapshots are also a raw memory file plus
// device state). The guest image and the guest agent's protocol and client
// are in vmhost/guest.
//
// Vocabulary:
//
//   - Hypervisor: a driver that starts, restores and re-attaches VMs.
//   - VM: one hypervisor process running one guest. Its runtime directory
//     (Config.Dir) holds its control sockets, pidfile, logs and, by default,
//     the memory file.
//   - memory file: guest RAM, mapped shared from a regular file
//     (Config.MemoryPath), so that a paused guest's RAM is already a file
//     and a snapshot copies no memory.
//   - snapshot directory: what Standby leaves and Restore reads:
//     MemoryFile, DeviceStateFile and SnapshotInfoFile (written last, the
//     local commit point). These are the files the storage pipeline moves.
//   - standby: pause, write device state, make both files durable, stop the
//     hypervisor. The VM is then parked on local disk.
//   - restore: start a hypervisor on a snapshot's memory file (which becomes
//     the live RAM of the new VM) and load its device state.
//
// VM states: starting → running ⇄ paused (only inside Standby) → stopped
// (an exit we asked for) or crashed (any other exit).
package vmhost
