package daemon

import (
	"net"
	"os"
)

// sdNotify sends state to the service manager when the process runs
// under systemd with Type=notify (NOTIFY_SOCKET set); without it, it does
// nothing. An abstract socket is written "@name".
func sdNotify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}
