// Package qemu is the QEMU driver of vmhost.Hypervisor.
//
// Each VM is a qemu-system-x86_64 process with guest RAM in a shared
// memory-backend-file, QMP on Dir/qmp.sock (a small client of our own:
// greeting, qmp_capabilities, commands with ids, file descriptors passed
// with SCM_RIGHTS), the console (ttyS0) appended to Dir/console.log, the
// guest agent's serial port (ttyS1) on Dir/agent.sock, QEMU's own stderr in
// Dir/qemu.log and its pid in Dir/qemu.pid. Dir/qemu.json records the
// machine arguments so that a restarted daemon can Attach.
//
// Standby: QMP stop; migrate (x-ignore-shared is set at launch, so the
// stream carries device state only) to a file descriptor passed with getfd;
// poll query-migrate; fsync device state and memory file; quit. Restore:
// the same machine arguments plus -incoming defer and -S; migrate-incoming
// from the device-state file (again by fd); wait for the status to leave
// inmigrate; cont.
//
// Supervision: the driver reaps its children and records their exit; an
// exit it did not ask for makes the VM crashed. Children get
// PR_SET_PDEATHSIG (unless Settings.KeepRunningOnOwnerExit), so a dead
// daemon leaves no QEMU behind; Close kills every VM still running; any
// failed Start or Restore kills what it spawned. Attached VMs (not our
// children) are watched through a pidfd.
//
// Private memory (Settings.PrivateMemory for every VM of a driver,
// RestoreSource.PrivateMemory for one restore, e.g. over a lazy FUSE file):
// guest RAM maps the memory file share=off, so the file is only read. The
// flag is recorded in Dir/qemu.json, so an attached VM keeps it. Standby
// and Snapshot then migrate every RAM page through a pipe into
// migstream.Convert, which writes a new memory file and a device state
// equal to a share=on standby's (docs/migstream.md).
//
// The accelerator is kvm by default and tcg by setting: nested setups may
// offer a /dev/kvm that hangs guests, and tests run under tcg.
package qemu
