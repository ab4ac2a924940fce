// Package devenv is `hangar dev`: a whole hangar cluster in one process on
// one machine, for the README's quick start and for trying things out.
//
// Run starts, under one errgroup, the control plane (server.New + Serve)
// and N host daemons (daemon.New + Run), each host with its own data
// directory, chunk cache and host API port, so that a restore "on another
// host" really starts from an empty cache and downloads from the store.
// They share only the central store: by default an fs store (a local
// directory, the embedded store), or an S3 bucket (MinIO, AWS) when an S3
// endpoint is given. The guest image is built once before the hosts start
// (vmhost/guest, cached under $HANGAR_CACHE/image) and every host loads
// that same image, so snapshots move between them.
//
// Layout of the dev directory (Config.Dir):
//
//	<dir>/tokens.json        the user and cluster tokens (0600), generated on
//	                         the first start and kept, so the env lines an
//	                         operator pasted keep working after a restart
//	<dir>/server/            the server's catalog cache (state_dir)
//	<dir>/store/             the fs store, when no S3 endpoint is given
//	<dir>/hosts/host-N/      host N's data directory; its chunk cache is
//	                         <dir>/hosts/host-N/cache
//
// Shutdown (the context ends, Ctrl-C in `hangar dev`): the hosts stop
// first, the server last. A host stops the VMs that still run (their QEMU
// processes are killed: their memory is lost, and a later `hangar dev`
// shows them in state Error); instances on standby stay parked, in the
// store and in the hosts' local directories, and come back with the next
// `hangar dev` on the same directory, as do upload jobs that were
// interrupted (they resume). Before stopping, Run reports through
// Config.OnStop which instances were stopped and which stay parked.
package devenv
