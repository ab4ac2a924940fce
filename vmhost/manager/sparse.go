package manager

import "github.com/hangar-vm/hangar/vmhost"

// copySparse is vmhost.CopySparse: a fork's own sparse (or cloned) copy of
// a snapshot's memory file.
var copySparse = vmhost.CopySparse

const copyReflink, copySeekData = vmhost.CopyReflink, vmhost.CopySeekData
