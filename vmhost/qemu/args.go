package qemu

import (
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/hangar-vm/hangar/vmhost"
)

// Files in a VM's runtime directory, beside the memory file.
const (
	qmpSocket   = "qmp.sock"
	agentSocket = "agent.sock"
	consoleLog  = "console.log"
	qemuLog     = "qemu.log"
	pidFile     = "qemu.pid"
	runtimeFile = "qemu.json" // runtimeInfo: what Attach needs
)

// machineArgs are the arguments that define the virtual machine. A restore
// must pass exactly the same ones (plus -incoming): the device state only
// loads into an identical machine.
type machineArgs struct {
	Machine  string        `json:"machine"` // resolved, versioned machine type
	Accel    string        `json:"accel"`
	CPU      string        `json:"cpu"`
	Config   vmhost.Config `json:"config"`
	Incoming bool          `json:"incoming,omitempty"`
	// PrivateMemory maps the memory file share=off (Settings.PrivateMemory
	// or RestoreSource.PrivateMemory). It is recorded in the runtime file,
	// so an attached VM still stands by through the converter.
	PrivateMemory bool `json:"private_memory,omitempty"`
}

// ramBlock is the id of the memory backend, which is also the name of
// its RAM block in the migration stream.
const ramBlock = "ram0"

func paths(cfg vmhost.Config) vmhost.Paths {
	return vmhost.Paths{
		Dir:         cfg.Dir,
		Memory:      cfg.MemoryPath,
		AgentSocket: filepath.Join(cfg.Dir, agentSocket),
		ConsoleLog:  filepath.Join(cfg.Dir, consoleLog),
		Log:         filepath.Join(cfg.Dir, qemuLog),
	}
}

// args builds QEMU's command line. Paths were validated free of commas
// (QEMU's option separator), so no escaping is needed.
func (m machineArgs) args() []string {
	cfg := m.Config
	p := paths(cfg)
	a := []string{
		"-name", cfg.Name,
		"-nodefaults", "-no-user-config", "-display", "none",
		"-msg", "timestamp=on",
		"-machine", fmt.Sprintf("%s,accel=%s,memory-backend=%s", m.Machine, m.Accel, ramBlock),
		"-cpu", m.CPU,
		"-m", fmt.Sprintf("%dM", cfg.MemoryMiB),
		"-smp", strconv.Itoa(cfg.VCPUs),
		// Guest RAM is the file itself (share=on): after a pause the file is
		// the memory image, so a snapshot writes no RAM at all. Private
		// memory (share=off) only reads the file.
		"-object", fmt.Sprintf("memory-backend-file,id=%s,size=%dM,mem-path=%s,share=%s", ramBlock, cfg.MemoryMiB, cfg.MemoryPath, onOff(!m.PrivateMemory)),
		"-kernel", cfg.Boot.Kernel,
	}
	if cfg.Boot.Initrd != "" {
		a = append(a, "-initrd", cfg.Boot.Initrd)
	}
	if cfg.Boot.Cmdline != "" {
		a = append(a, "-append", cfg.Boot.Cmdline)
	}
	a = append(a,
		// ttyS0: the console, appended to across restores.
		"-chardev", fmt.Sprintf("file,id=console,path=%s,append=on", p.ConsoleLog),
		"-device", "isa-serial,chardev=console,index=0",
		// ttyS1: the guest agent.
		"-chardev", fmt.Sprintf("socket,id=agent,path=%s,server=on,wait=off", p.AgentSocket),
		"-device", "isa-serial,chardev=agent,index=1",
		"-qmp", fmt.Sprintf("unix:%s,server=on,wait=off", filepath.Join(cfg.Dir, qmpSocket)),
		"-pidfile", filepath.Join(cfg.Dir, pidFile),
		// A guest reboot or panic ends the process, so it is seen as an exit.
		"-no-reboot",
		// CPUs start stopped; the driver resumes them once it controls QMP
		// (and, on restore, once the device state is loaded).
		"-S",
	)
	if m.Incoming {
		a = append(a, "-incoming", "defer")
	}
	return a
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
