// Command hangar-agent is the guest agent: it runs inside every hangar guest
// (started and respawned by the image's init) and answers the host on the
// second serial port. The protocol and the host-side client are in
// vmhost/guest/agent. It is built static (CGO_ENABLED=0) by the image
// builder, vmhost/guest.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/hangar-vm/hangar/vmhost/guest/agent"
)

func main() {
	port := flag.String("port", "/dev/ttyS1", "serial port to serve on")
	flag.Parse()
	log.SetPrefix("hangar-agent: ")
	log.SetFlags(0)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, *port); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func run(ctx context.Context, port string) error {
	f, err := os.OpenFile(port, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := makeRaw(int(f.Fd())); err != nil {
		return fmt.Errorf("%s: %w", port, err)
	}
	a := agent.New(ctx)
	log.Printf("serving on %s", port)
	return a.Serve(ctx, f)
}

// makeRaw puts the serial line in raw mode (no echo, no line editing, no
// newline translation, 8 bits, modem lines ignored) and drops whatever
// arrived before, which the cooked line discipline has mangled.
func makeRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("get termios: %w", err)
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CBAUD | unix.CRTSCTS
	t.Cflag |= unix.CS8 | unix.CLOCAL | unix.CREAD | unix.B115200
	t.Ispeed, t.Ospeed = unix.B115200, unix.B115200
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return fmt.Errorf("set termios: %w", err)
	}
	if err := unix.IoctlSetInt(fd, unix.TCFLSH, unix.TCIFLUSH); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}
