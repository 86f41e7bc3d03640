package engine

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

// busOffset is how far above its port a Redis Cluster node's bus listens
// by default (RedisCluster.BusPorts).
const busOffset = 10000

// reservations are the ports FreePorts handed out in this process, each
// held until the process ends by an flock on a file of PortLockDir, which
// every other process that asks FreePorts for a port respects.
var reservations struct {
	mu    sync.Mutex
	files map[int]*os.File
}

// PortLockDir is where FreePorts keeps a lock file per port it handed out,
// so that test binaries running at once (go test runs packages in
// parallel, and t.Parallel tests within one) never get the same port.
var PortLockDir = filepath.Join(os.TempDir(), "kvstack-ports")

// FreePorts returns n TCP ports of 127.0.0.1 that nothing listens on now
// and that no other call of FreePorts, in this process or any other one
// still running, has returned: the kernel picks each, and a port is only
// kept once it is reserved for the rest of the process. Each port's
// port+10000 (a Redis Cluster node's default bus port) is reserved with
// it, and free too, so that a bus never lands on another test's port.
func FreePorts(n int) ([]int, error) {
	reservations.mu.Lock()
	defer reservations.mu.Unlock()
	if reservations.files == nil {
		reservations.files = map[int]*os.File{}
	}
	ports := make([]int, 0, n)
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100*n+100 {
			return nil, fmt.Errorf("no %d free ports found in %d tries", n, tries)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln) // held until every port is chosen: the kernel picks another each time
		port := ln.Addr().(*net.TCPAddr).Port
		ok, err := reservePorts(port)
		if err != nil {
			return nil, err
		}
		if ok {
			ports = append(ports, port)
		}
	}
	return ports, nil
}

// reservePorts reserves port and, when it exists, port+busOffset (which
// must be free to listen on): both or neither.
func reservePorts(port int) (bool, error) {
	ok, err := reservePort(port)
	if !ok || err != nil {
		return false, err
	}
	bus := port + busOffset
	if bus > 65535 {
		return true, nil
	}
	if ok, err = reservePort(bus); !ok || err != nil {
		releasePort(port)
		return false, err
	}
	ln, err := net.Listen("tcp", addr(bus))
	if err != nil { // someone listens there: not ours to give
		releasePort(port)
		releasePort(bus)
		return false, nil
	}
	ln.Close()
	return true, nil
}

// reservePort takes port's lock file, unless this process or another one
// holds it.
func reservePort(port int) (bool, error) {
	if _, mine := reservations.files[port]; mine {
		return false, nil
	}
	if err := os.MkdirAll(PortLockDir, 0o777); err != nil {
		return false, err
	}
	_ = os.Chmod(PortLockDir, 0o1777) // every user's tests share it
	f, err := os.OpenFile(filepath.Join(PortLockDir, strconv.Itoa(port)), os.O_CREATE|os.O_RDONLY, 0o666)
	if err != nil {
		return false, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return false, nil
		}
		return false, fmt.Errorf("lock port %d: %w", port, err)
	}
	reservations.files[port] = f
	return true, nil
}

func releasePort(port int) {
	if f, ok := reservations.files[port]; ok {
		f.Close()
		delete(reservations.files, port)
	}
}
