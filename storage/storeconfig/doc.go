// Package storeconfig is the wiring of central storage: the one store
// section every hangar process reads (server, host daemon, `hangar store`)
// and the one place its wrappers are stacked.
//
// Config is the section as it appears under store: in every config file
// (kind, s3, dir, retry; HANGAR_STORE_... in the environment), with its
// defaults in WithDefaults and every problem reported at once by Validate.
// Open turns it into retry(metrics(backend)): metrics sit under retry so
// that every attempt is measured, and retry reports each retry to metrics
// (restic's wrapBackend, kopia's repo/open.go). No backend or wrapper
// stacks itself; this package imports them all because it is wiring, and
// nothing below it imports it.
//
// Files: config.go (Config, kinds, defaults, Validate), open.go (Open).
package storeconfig
