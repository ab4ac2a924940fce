package qemu

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hangar-vm/hangar/vmhost"
)

// Accelerators.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
)

// Settings configure the driver. Defaults are filled in by WithDefaults, the
// one place they live.
type Settings struct {
	// Binary is the QEMU system emulator; default qemu-system-x86_64 on PATH.
	Binary string
	// Accel is "kvm" (default) or "tcg" (software emulation: slow, but runs
	// where /dev/kvm is missing or, in nested setups, hangs the guest).
	Accel string
	// Machine is the machine type; default "q35". Aliases are resolved to
	// the versioned type (pc-q35-7.2) and that is what snapshots record
	// and restores use, so a newer QEMU still restores older snapshots.
	Machine string
	// CPU is the CPU model; default "host" under kvm and "max" under tcg.
	CPU string
	// QuitTimeout bounds how long Stop, Standby and Close wait for QEMU to
	// exit after quit before killing it; default 10s.
	QuitTimeout time.Duration
	// KeepRunningOnOwnerExit leaves guests running when the owning process
	// dies (no PR_SET_PDEATHSIG), so that a restarted daemon can Attach to
	// them. Off by default: a dead owner takes its QEMUs with it.
	KeepRunningOnOwnerExit bool
	// PrivateMemory maps guest RAM privately (memory-backend-file
	// share=off): the memory file a VM starts or restores from is only
	// read, pages the guest writes are copied in RAM (copy on write), so
	// one file can back many guests. Standby then cannot leave the RAM in
	// that file: it migrates every RAM page through migstream.Convert,
	// which writes a new memory file and a device state that the share=on
	// restore resumes; Snapshot does the same and resumes the guest (a
	// pause of the whole RAM's conversion). RestoreSource.PrivateMemory
	// makes one restore private on a host where this is off.
	PrivateMemory bool
	// Logger receives driver events; default slog.Default().
	Logger *slog.Logger
}

// WithDefaults returns s with empty fields set to their defaults.
func (s Settings) WithDefaults() Settings {
	if s.Binary == "" {
		s.Binary = "qemu-system-x86_64"
	}
	if s.Accel == "" {
		s.Accel = AccelKVM
	}
	if s.Machine == "" {
		s.Machine = "q35"
	}
	if s.CPU == "" {
		if s.Accel == AccelKVM {
			s.CPU = "host"
		} else {
			s.CPU = "max"
		}
	}
	if s.QuitTimeout == 0 {
		s.QuitTimeout = 10 * time.Second
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	return s
}

// Validate reports every problem at once, wrapping vmhost.ErrInvalidConfig.
func (s Settings) Validate() error {
	var errs []error
	if s.Accel != AccelKVM && s.Accel != AccelTCG {
		errs = append(errs, fmt.Errorf("accel %q: want %q or %q", s.Accel, AccelKVM, AccelTCG))
	}
	if s.QuitTimeout < 0 {
		errs = append(errs, fmt.Errorf("quit timeout %v is negative", s.QuitTimeout))
	}
	for name, v := range map[string]string{"machine": s.Machine, "cpu": s.CPU} {
		for _, r := range v {
			if r == ',' || r == ' ' || r < 0x20 {
				errs = append(errs, fmt.Errorf("%s %q contains a comma, space or control character", name, v))
				break
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: qemu settings: %w", vmhost.ErrInvalidConfig, err)
	}
	return nil
}
